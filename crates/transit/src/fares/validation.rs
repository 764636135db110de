//! `citycard fare check`: a feed's errors and warnings with file, line and
//! field, in the spirit of the canonical GTFS validator's fare notices.

use super::engine::{FareEngine, LegRule};
use super::loader::LoadMode;
use crate::data::{Diagnostic, FareData, Severity};
use crate::error::LoadError;

/// Checks a feed: loads it leniently (every row error is listed, with the
/// rows left out) and adds what only the whole feed shows: unreachable leg
/// rules, networks no rule prices, products without a price for a medium.
/// A structural problem (a required file missing, a bad header) is the error.
pub fn check(data: &FareData) -> Result<Vec<Diagnostic>, LoadError> {
    let (engine, mut found) = FareEngine::load_with(data, LoadMode::Lenient)?;
    engine.feed_findings(&mut found);
    found.sort_by(|a, b| {
        (a.severity, &a.at.file, a.at.line).cmp(&(b.severity, &b.at.file, b.at.line))
    });
    Ok(found)
}

fn warning(code: &str, file: &str, line: u64, field: &str, problem: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        code: code.to_owned(),
        at: LoadError::new(file, line, field, problem),
        row_left_out: false,
    }
}

/// Whether rule `a` matches every leg `b` matches (its fields empty or equal, no distance bounds).
fn covers(a: &LegRule, b: &LegRule) -> bool {
    fn field<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
        a.is_none() || a == b
    }
    a.min.is_none()
        && a.max.is_none()
        && !a.transfer_only
        && !b.transfer_only
        && field(&a.network, &b.network)
        && field(&a.from_area, &b.from_area)
        && field(&a.to_area, &b.to_area)
        && field(&a.from_tf, &b.from_tf)
        && field(&a.to_tf, &b.to_tf)
}

impl FareEngine {
    fn feed_findings(&self, out: &mut Vec<Diagnostic>) {
        const RULES: &str = "fare_leg_rules.txt";
        // Rules shadowed by a higher-priority rule that matches every leg they match.
        if self.priority_mode {
            for b in &self.leg_rules {
                if let Some(a) = self
                    .leg_rules
                    .iter()
                    .find(|a| a.priority > b.priority && covers(a, b))
                {
                    out.push(warning(
                        "unreachable_fare_leg_rule",
                        RULES,
                        b.line,
                        "rule_priority",
                        format!(
                            "never applies: line {} has a higher rule_priority and matches every leg this rule matches",
                            a.line
                        ),
                    ));
                }
            }
        }
        // Rules on a network no route belongs to.
        for r in &self.leg_rules {
            if let Some(n) = r.network
                && !self.network.routes.iter().any(|x| x.network == n)
                && !self.limits.get(n.get()).is_some_and(|l| l.requires_tap_out)
            {
                let id = self
                    .network
                    .networks
                    .get(n.get())
                    .map_or("?", |x| x.id.as_str());
                out.push(warning(
                    "unreachable_fare_leg_rule",
                    RULES,
                    r.line,
                    "network_id",
                    format!("no route is in network {id:?}: only gated station legs can match"),
                ));
            }
        }
        // Networks with routes that no rule can price.
        for (n, c) in self.candidates.iter().enumerate() {
            let routes = self
                .network
                .routes
                .iter()
                .filter(|r| r.network.get() == n)
                .count();
            if routes > 0 && c.rules.is_empty() {
                let id = self.network.networks.get(n).map_or("?", |x| x.id.as_str());
                out.push(warning(
                    "network_without_fare_leg_rule",
                    RULES,
                    0,
                    "network_id",
                    format!("{routes} route(s) of network {id:?} match no fare leg rule: their fares are unknown"),
                ));
            }
        }
        // Products used by rules without a price for a medium the feed lists.
        let mut used: Vec<(u32, &str, u64)> = self
            .leg_rules
            .iter()
            .map(|r| (r.product, RULES, r.line))
            .collect();
        used.extend(
            self.transfer_rules
                .iter()
                .filter_map(|r| r.product.map(|p| (p, "fare_transfer_rules.txt", r.line))),
        );
        used.sort_by_key(|(p, _, _)| *p);
        used.dedup_by_key(|(p, _, _)| *p);
        for (p, file, line) in used {
            let Some(product) = self.products.get(p as usize) else {
                continue;
            };
            for (id, _, kind) in &self.media {
                let priced = product.amounts.iter().any(|(_, m, _)| {
                    m.is_none_or(|m| self.media.get(m as usize).is_some_and(|x| x.2 == *kind))
                });
                if !priced {
                    out.push(warning(
                        "fare_product_without_price_for_media",
                        file,
                        line,
                        "fare_product_id",
                        format!(
                            "fare product {:?} has no price for fare media {id:?} (type {kind}): riders paying with it find no fare",
                            product.id
                        ),
                    ));
                }
            }
        }
        // Leg groups that no rule defines are caught at load; groups never used are fine.
    }
}
