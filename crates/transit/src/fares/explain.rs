//! Readable explanations of priced legs.

use std::fmt::Write as _;

use super::engine::FareEngine;
use super::model::{FareBasis, LegFare, MaximumFareReason, Quote};

impl Quote {
    /// One readable line per leg, in English, naming the rules applied.
    pub fn explain(&self, engine: &FareEngine) -> Vec<String> {
        self.legs.iter().map(|l| engine.explain_leg(l)).collect()
    }
}

impl FareEngine {
    /// A readable line for one priced leg.
    pub fn explain_leg(&self, l: &LegFare) -> String {
        let money = |m| self.currency.format(m);
        let mut s = String::new();
        let product = self.products.get(l.product as usize);
        let pname = product.map_or("?", |p| p.name.as_str());
        let _ = write!(s, "leg {}: ", l.leg + 1);
        if let Some(first) = l.joined_to {
            let _ = write!(
                s,
                "joined to leg {} as one effective fare leg (fare_leg_join_rules.txt); you pay {}",
                first + 1,
                money(l.paid)
            );
            return s;
        }
        match l.basis {
            FareBasis::Distance { metres } => {
                let _ = write!(
                    s,
                    "{}.{:03} km by the shortest metro path",
                    metres / 1000,
                    metres % 1000
                );
            }
            FareBasis::Sections { count } => {
                let _ = write!(s, "{count} fare section(s)");
            }
            FareBasis::Flat => s.push_str("flat fare"),
            FareBasis::MaximumFare(MaximumFareReason::MissingTapOut) => {
                s.push_str("no tap-out recorded, so the maximum fare applies");
            }
            FareBasis::MaximumFare(MaximumFareReason::OverTimeLimit { minutes, limit }) => {
                let _ = write!(
                    s,
                    "{minutes} minutes in the system exceeds the {limit}-minute limit, so the maximum fare applies"
                );
                if l.rule.is_some() {
                    s.push_str(" (the highest single fare from the exit station)");
                }
            }
        }
        if let Some(rule) = l.rule.and_then(|r| self.leg_rules.get(r as usize)) {
            let _ = write!(
                s,
                "; fare_leg_rules.txt line {} gives {pname} {}",
                rule.line,
                money(l.base)
            );
        } else {
            let _ = write!(s, "; {pname} {}", money(l.base));
        }
        if let Some(c) = l.concession
            && let Some(con) = self.concessions.get(c.concession as usize)
        {
            let cat = self
                .categories
                .get(con.category as usize)
                .map_or("?", |c| c.1.as_str());
            let _ = write!(
                s,
                "; concession {} ({cat}) pays {}% → {}",
                con.id,
                c.percent,
                money(l.after_concession)
            );
        }
        if let Some(t) = l.tier {
            let _ = write!(
                s,
                "; monthly tier {}% (spent {} this month before this ride)",
                t.percent,
                money(t.spend_before)
            );
        }
        if let Some(t) = l.transfer {
            let line = self
                .transfer_rules
                .get(t.rule as usize)
                .map_or(0, |r| r.line);
            let _ = write!(
                s,
                "; transfer discount {} (fare_transfer_rules.txt line {line})",
                money(t.discount)
            );
        }
        if let Some(c) = l.cap
            && let Some(cap) = self.caps.get(c.cap as usize)
        {
            let _ = write!(
                s,
                "; {:?} cap {} ({}) lowers it by {}",
                c.period,
                cap.id,
                money(cap.amount),
                money(c.reduced_by)
            );
        }
        let _ = write!(s, "; you pay {}", money(l.paid));
        s
    }
}
