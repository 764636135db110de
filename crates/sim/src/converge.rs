//! Once faults stop, every platform pass converges to its card: after the
//! host resynchronises the passes and refreshes the balances, each active
//! binding has an active pass showing the ledger's balance, each suspended
//! one a suspended pass, each removed one no pass, and none is pending.

use citycard::binding::{BindingState, PassStatus};
use citycard::core::Principal;

use crate::check::Violation;
use crate::world::{PLATFORMS, World};

/// Resynchronises every pass and checks it shows its card's state.
pub async fn passes(world: &World) -> Result<(), Violation> {
    let passes = world.wallet.passes();
    for (i, person) in world.people.iter().enumerate() {
        let me = Principal::cardholder(person.person.clone());
        for (pi, account) in person.accounts.iter().enumerate() {
            let Some((account, _)) = account else {
                continue;
            };
            let bindings = world
                .city
                .cards()
                .bindings_of_account(&Principal::System, &PLATFORMS[pi], account)
                .await
                .map_err(|e| format!("bindings of cardholder {i} cannot be read: {e}"))?;
            for b in bindings {
                let status = world.wallet.status_of(&b.platform, &b.pass_serial);
                match b.state {
                    BindingState::Pending => {
                        return Err(format!(
                            "binding {} of cardholder {i} is still pending once faults stopped",
                            b.id
                        ));
                    }
                    BindingState::Removed => {
                        if status.is_some() {
                            return Err(format!(
                                "binding {} is removed but its pass is still in the wallet",
                                b.id
                            ));
                        }
                    }
                    BindingState::Active | BindingState::Suspended => {
                        world
                            .city
                            .cards()
                            .resync_pass(&Principal::System, &b.id)
                            .await
                            .map_err(|e| {
                                format!("pass of binding {} does not resync: {e}", b.id)
                            })?;
                        let want = if b.state == BindingState::Active {
                            PassStatus::Active
                        } else {
                            PassStatus::Suspended
                        };
                        let got = world.wallet.status_of(&b.platform, &b.pass_serial);
                        if got != Some(want) {
                            return Err(format!(
                                "binding {} is {:?} but its pass is {got:?} after a resync",
                                b.id, b.state
                            ));
                        }
                        if b.state == BindingState::Active {
                            let view = world
                                .city
                                .cards()
                                .refresh_balance(&me, &b.id)
                                .await
                                .map_err(|e| {
                                    format!("balance of binding {} does not refresh: {e}", b.id)
                                })?;
                            let ledger = world
                                .city
                                .wallet()
                                .balance(&Principal::System, &b.card)
                                .await
                                .map_err(|e| format!("balance cannot be read: {e}"))?;
                            let shown = world
                                .wallet
                                .passes()
                                .into_iter()
                                .find(|p| p.serial == b.pass_serial)
                                .and_then(|p| p.balance)
                                .map(|v| v.balance);
                            if view.balance != ledger || shown != Some(ledger) {
                                return Err(format!(
                                    "binding {}'s pass shows {shown:?} (view {}) but the ledger holds {ledger}",
                                    b.id, view.balance
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    let _ = passes;
    Ok(())
}
