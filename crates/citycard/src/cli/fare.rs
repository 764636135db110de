//! `citycard fare quote` and `citycard fare stations`: price a journey on the
//! embedded Hangzhou fare rules, and list the names a journey may use.

use std::io::Write;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use citycard_core::{Money, china_offset, civil_date};
use citycard_transit::{CardKind, FareEngine, Journey, Leg, Medium, Rider};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::{CliError, OutputFormat, read_input};

/// Arguments of `citycard fare quote`.
#[derive(Debug, Args)]
pub struct QuoteArgs {
    /// One leg, in travel order: `LINE:FROM[:TO]@HH:MM[-HH:MM]`.
    ///
    /// LINE is a route (`b7`, `b51`, `b500`, `m1`, `w1`, …) or a network (`metro`);
    /// FROM and TO are stop ids or names (`m_xianghu`, "Qianjiang Road"); the times
    /// are Hangzhou local boarding and alighting times on `--date`. Metro and
    /// sectioned-bus legs need TO and an alighting time (else the maximum fare
    /// applies); flat-fare buses need neither. Example:
    /// `--leg b7:b_wulin@08:30 --leg metro:m_xianghu:m_qianjiang@08:50-09:20`.
    #[arg(long = "leg", value_name = "LEG")]
    pub legs: Vec<String>,
    /// A JSON journey from a file, or `-` for standard input (instead of `--leg` and the rider flags).
    #[arg(long, value_name = "FILE", conflicts_with = "legs")]
    pub json: Option<String>,
    /// The rider's card kind.
    #[arg(long, value_enum, default_value_t = CardKindArg::Ordinary, conflicts_with = "json")]
    pub card_kind: CardKindArg,
    /// The rider's age in whole years (for age-based concession rows; Hangzhou's follow the card kind).
    #[arg(long, conflicts_with = "json")]
    pub age: Option<u8>,
    /// Paying with a ride code instead of the card.
    #[arg(long, conflicts_with = "json")]
    pub ride_code: bool,
    /// Apply the monthly volume tiers (e.g. topped up at least ¥50).
    #[arg(long, conflicts_with = "json")]
    pub volume_tiers: bool,
    /// Spend earlier this month, for the volume tiers (yuan, e.g. 62.50).
    #[arg(long, value_name = "AMOUNT", conflicts_with = "json")]
    pub month_spend: Option<String>,
    /// The travel date (YYYY-MM-DD, Hangzhou); today by default.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "json")]
    pub date: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Arguments of `citycard fare stations`.
#[derive(Debug, Args)]
pub struct StationsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// A card kind, as a command-line choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardKindArg {
    /// An ordinary card.
    Ordinary,
    /// A student card.
    Student,
    /// The 70+ card (老年卡).
    Senior,
    /// A card for a person with a disability.
    Disabled,
    /// A veteran's card (no sourced transit concession).
    Veteran,
    /// A card for blood-donation award holders.
    BloodDonor,
    /// The 60–69 elder card (长者卡).
    Elder,
    /// Serving soldiers, disabled soldiers and pre-1949 retired cadres.
    Military,
}

impl From<CardKindArg> for CardKind {
    fn from(k: CardKindArg) -> Self {
        match k {
            CardKindArg::Ordinary => CardKind::Ordinary,
            CardKindArg::Student => CardKind::Student,
            CardKindArg::Senior => CardKind::Senior,
            CardKindArg::Disabled => CardKind::Disabled,
            CardKindArg::Veteran => CardKind::Veteran,
            CardKindArg::BloodDonor => CardKind::BloodDonor,
            CardKindArg::Elder => CardKind::Elder,
            CardKindArg::Military => CardKind::Military,
        }
    }
}

/// A journey as JSON (`--json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyJson {
    /// The card kind (default ordinary).
    #[serde(default)]
    pub card_kind: Option<CardKindArg>,
    /// Age in whole years.
    #[serde(default)]
    pub age: Option<u8>,
    /// `card` (default) or `ride_code`.
    #[serde(default)]
    pub medium: Option<Medium>,
    /// Whether monthly tiers apply.
    #[serde(default)]
    pub volume_tiers: bool,
    /// Spend earlier this month, yuan as text.
    #[serde(default)]
    pub month_spend_before: Option<String>,
    /// The travel date, YYYY-MM-DD (Hangzhou); today by default.
    #[serde(default)]
    pub date: Option<String>,
    /// The legs in travel order.
    pub legs: Vec<LegJson>,
}

/// One leg as JSON: `route` or `network`, stops, times.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegJson {
    /// A route id (`b7`, `m1`, …).
    #[serde(default)]
    pub route: Option<String>,
    /// A network id (`metro`) for a station-to-station leg.
    #[serde(default)]
    pub network: Option<String>,
    /// Boarding stop (id or name).
    pub from: String,
    /// Alighting stop (id or name).
    #[serde(default)]
    pub to: Option<String>,
    /// Boarding time: `HH:MM` on the date, or RFC 3339.
    pub board: String,
    /// Alighting time: `HH:MM` on the date, or RFC 3339.
    #[serde(default)]
    pub alight: Option<String>,
}

/// One priced leg of the JSON output.
#[derive(Debug, Serialize)]
struct LegOut {
    explain: String,
    #[serde(flatten)]
    fare: citycard_transit::LegFare,
}

/// The JSON output of a quote.
#[derive(Debug, Serialize)]
struct QuoteOut {
    date: NaiveDate,
    total: Money,
    discounts: Money,
    legs: Vec<LegOut>,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

fn parse_date(text: Option<&str>) -> Result<NaiveDate, CliError> {
    match text {
        None => Ok(civil_date(Utc::now())),
        Some(t) => NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
            .map_err(|_| usage(format!("date {t:?} is not YYYY-MM-DD"))),
    }
}

/// A time as given: a bare clock time on the journey's date, or an instant.
#[derive(Debug, Clone, Copy)]
enum Given {
    /// `HH:MM` on the date, in Hangzhou.
    Clock(DateTime<Utc>),
    /// An RFC 3339 instant, taken as it is.
    Instant(DateTime<Utc>),
}

impl Given {
    fn at(self) -> DateTime<Utc> {
        match self {
            Given::Clock(at) | Given::Instant(at) => at,
        }
    }
}

/// `HH:MM` on `date` in Hangzhou, or an RFC 3339 instant.
fn parse_time(text: &str, date: NaiveDate) -> Result<Given, CliError> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(Given::Instant(at.with_timezone(&Utc)));
    }
    let time = NaiveTime::parse_from_str(t, "%H:%M")
        .map_err(|_| usage(format!("time {t:?} is not HH:MM (or RFC 3339)")))?;
    china_offset()
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|at| Given::Clock(at.with_timezone(&Utc)))
        .ok_or_else(|| usage(format!("time {t:?} does not exist on {date}")))
}

/// The boarding and alighting instants of one leg. A bare `HH:MM` alighting
/// time earlier than boarding is on the next day (a ride past midnight); an
/// explicit alighting instant before boarding is an error.
fn leg_times(
    leg: usize,
    board: &str,
    alight: Option<&str>,
    date: NaiveDate,
) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), CliError> {
    let board_at = parse_time(board, date)?.at();
    let alight_at = match alight.map(|a| parse_time(a, date)).transpose()? {
        None => None,
        Some(Given::Clock(a)) if a < board_at => Some(a + Duration::days(1)),
        Some(Given::Instant(a)) if a < board_at => {
            return Err(usage(format!(
                "leg {leg}: alighting {} is before boarding {}; give the alighting time after the boarding time",
                alight.unwrap_or_default().trim(),
                board.trim()
            )));
        }
        Some(given) => Some(given.at()),
    };
    Ok((board_at, alight_at))
}

/// A few names from a list, for error messages.
fn some_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    let shown = all.iter().take(8).copied().collect::<Vec<_>>().join(", ");
    if all.len() > 8 {
        format!("{shown}, … ({} in all)", all.len())
    } else {
        shown
    }
}

/// A stop id from an id or a name (case-insensitive).
fn resolve_stop<'a>(engine: &'a FareEngine, given: &str) -> Result<&'a str, CliError> {
    let n = engine.network();
    let g = given.trim();
    if let Some(idx) = n.stop(g) {
        return n
            .stop_info(idx)
            .map(|s| s.id.as_str())
            .ok_or_else(|| usage(format!("unknown stop {g:?}")));
    }
    n.stops()
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(g) || s.id.eq_ignore_ascii_case(g))
        .map(|s| s.id.as_str())
        .ok_or_else(|| {
            usage(format!(
                "unknown stop or station {g:?}; valid ones include {} (run `citycard fare stations` for all)",
                some_of(n.stops().iter().map(|s| s.id.as_str()))
            ))
        })
}

enum Line<'a> {
    Route(&'a str),
    Network(&'a str),
}

fn resolve_line<'a>(engine: &FareEngine, given: &'a str) -> Result<Line<'a>, CliError> {
    let n = engine.network();
    let g = given.trim();
    if n.route(g).is_some() {
        Ok(Line::Route(g))
    } else if n.network(g).is_some() {
        Ok(Line::Network(g))
    } else {
        let mut networks: Vec<&str> = Vec::new();
        for r in n.routes() {
            if let Some(x) = n.network_info(r.network)
                && !networks.contains(&x.id.as_str())
            {
                networks.push(&x.id);
            }
        }
        Err(usage(format!(
            "unknown route or network {g:?}; routes are {}; networks are {} (run `citycard fare stations`)",
            some_of(n.routes().iter().map(|r| r.id.as_str())),
            networks.join(", ")
        )))
    }
}

fn build_leg(
    engine: &FareEngine,
    line: &str,
    from: &str,
    to: Option<&str>,
    board: DateTime<Utc>,
    alight: Option<DateTime<Utc>>,
) -> Result<Leg, CliError> {
    let from = resolve_stop(engine, from)?;
    let to = to.map(|t| resolve_stop(engine, t)).transpose()?;
    let leg = match resolve_line(engine, line)? {
        Line::Route(r) => engine.route_leg(r, from, to, board, alight),
        Line::Network(net) => engine.station_leg(net, from, to, board, alight),
    };
    leg.map_err(|e| usage(e.to_string()))
}

/// Parses `LINE:FROM[:TO]@HH:MM[-HH:MM]`.
fn parse_leg_arg(
    engine: &FareEngine,
    leg: usize,
    text: &str,
    date: NaiveDate,
) -> Result<Leg, CliError> {
    let bad = || {
        usage(format!(
            "leg {text:?} is not LINE:FROM[:TO]@HH:MM[-HH:MM] (e.g. b7:b_wulin@08:30 or metro:m_xianghu:m_qianjiang@08:50-09:20)"
        ))
    };
    let (place, times) = text.rsplit_once('@').ok_or_else(bad)?;
    let mut parts = place.split(':');
    let line = parts
        .next()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(bad)?;
    let from = parts
        .next()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(bad)?;
    let to = parts.next().filter(|s| !s.trim().is_empty());
    if parts.next().is_some() {
        return Err(bad());
    }
    let (board_text, alight_text) = match times.split_once('-') {
        Some((b, a)) => (b, Some(a)),
        None => (times, None),
    };
    let (board, alight) = leg_times(leg, board_text, alight_text, date)?;
    build_leg(engine, line, from, to, board, alight)
}

fn parse_money(text: &str) -> Result<Money, CliError> {
    let m = Money::parse(text.trim()).map_err(|e| usage(format!("amount {text:?}: {e}")))?;
    if m.is_negative() {
        return Err(usage(format!("amount {text:?} must not be negative")));
    }
    Ok(m)
}

fn journey_from_json(engine: &FareEngine, text: &str) -> Result<(NaiveDate, Journey), CliError> {
    let j: JourneyJson =
        serde_json::from_str(text).map_err(|e| usage(format!("not a JSON journey: {e}")))?;
    let date = parse_date(j.date.as_deref())?;
    let mut legs = Vec::with_capacity(j.legs.len());
    for (i, l) in j.legs.iter().enumerate() {
        let line = match (&l.route, &l.network) {
            (Some(r), None) => r.as_str(),
            (None, Some(n)) => n.as_str(),
            _ => {
                return Err(usage(format!(
                    "leg {} needs exactly one of \"route\" and \"network\"",
                    i + 1
                )));
            }
        };
        let (board, alight) = leg_times(i + 1, &l.board, l.alight.as_deref(), date)?;
        legs.push(build_leg(
            engine,
            line,
            &l.from,
            l.to.as_deref(),
            board,
            alight,
        )?);
    }
    let rider = Rider {
        card_kind: j.card_kind.unwrap_or(CardKindArg::Ordinary).into(),
        age: j.age,
        medium: j.medium.unwrap_or_default(),
        volume_tiers: j.volume_tiers,
    };
    let month_spend_before = j
        .month_spend_before
        .as_deref()
        .map(parse_money)
        .transpose()?
        .unwrap_or(Money::ZERO);
    Ok((
        date,
        Journey {
            rider,
            month_spend_before,
            legs,
        },
    ))
}

fn engine() -> Result<FareEngine, CliError> {
    FareEngine::hangzhou().map_err(|e| CliError::Domain(format!("fare data: {e}")))
}

/// Runs `citycard fare quote`.
pub fn quote(args: &QuoteArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let engine = engine()?;
    let (date, journey) = match &args.json {
        Some(path) => journey_from_json(&engine, &read_input(path)?)?,
        None => {
            if args.legs.is_empty() {
                return Err(usage(
                    "give the journey with --leg (one per leg) or --json FILE",
                ));
            }
            let date = parse_date(args.date.as_deref())?;
            let legs = args
                .legs
                .iter()
                .enumerate()
                .map(|(i, l)| parse_leg_arg(&engine, i + 1, l, date))
                .collect::<Result<Vec<_>, _>>()?;
            let rider = Rider {
                card_kind: args.card_kind.into(),
                age: args.age,
                medium: if args.ride_code {
                    Medium::RideCode
                } else {
                    Medium::Card
                },
                volume_tiers: args.volume_tiers,
            };
            let month_spend_before = args
                .month_spend
                .as_deref()
                .map(parse_money)
                .transpose()?
                .unwrap_or(Money::ZERO);
            (
                date,
                Journey {
                    rider,
                    month_spend_before,
                    legs,
                },
            )
        }
    };
    if journey.legs.is_empty() {
        return Err(usage("the journey has no legs"));
    }
    // The journey's date is the Hangzhou civil date of its first boarding: an
    // RFC 3339 instant names its own day, whatever `date` (or today) says.
    let date = journey.legs.first().map_or(date, |l| civil_date(l.board));
    let quote = engine
        .quote(&journey)
        .map_err(|e| CliError::Domain(format!("cannot price the journey: {e}")))?;
    let explain = quote.explain(&engine);
    match args.format {
        OutputFormat::Text => {
            writeln!(
                out,
                "total {:#} ({} legs on {date}; discounts {:#})",
                quote.total,
                quote.legs.len(),
                quote.discounts
            )?;
            for line in &explain {
                writeln!(out, "  {line}")?;
            }
        }
        OutputFormat::Json => {
            let doc = QuoteOut {
                date,
                total: quote.total,
                discounts: quote.discounts,
                legs: quote
                    .legs
                    .into_iter()
                    .zip(explain)
                    .map(|(fare, explain)| LegOut { explain, fare })
                    .collect(),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct NamesOut<'a> {
    networks: Vec<IdName<'a>>,
    routes: Vec<RouteOut<'a>>,
    stops: Vec<IdName<'a>>,
}

#[derive(Debug, Serialize)]
struct IdName<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Debug, Serialize)]
struct RouteOut<'a> {
    id: &'a str,
    name: &'a str,
    network: &'a str,
    operator: &'a str,
}

/// Runs `citycard fare stations`.
pub fn stations(args: &StationsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let engine = engine()?;
    let n = engine.network();
    let mut networks: Vec<IdName<'_>> = Vec::new();
    for r in n.routes() {
        if let Some(x) = n.network_info(r.network)
            && !networks.iter().any(|y| y.id == x.id)
        {
            networks.push(IdName {
                id: &x.id,
                name: &x.name,
            });
        }
    }
    let routes: Vec<RouteOut<'_>> = n
        .routes()
        .iter()
        .map(|r| RouteOut {
            id: &r.id,
            name: &r.name,
            network: n.network_info(r.network).map_or("?", |x| x.id.as_str()),
            operator: &r.operator,
        })
        .collect();
    let stops: Vec<IdName<'_>> = n
        .stops()
        .iter()
        .map(|s| IdName {
            id: &s.id,
            name: &s.name,
        })
        .collect();
    match args.format {
        OutputFormat::Json => {
            let doc = NamesOut {
                networks,
                routes,
                stops,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        OutputFormat::Text => {
            writeln!(
                out,
                "networks (use with station legs, e.g. metro:FROM:TO@…):"
            )?;
            for x in &networks {
                writeln!(out, "  {:<16} {}", x.id, x.name)?;
            }
            writeln!(out, "routes:")?;
            for r in &routes {
                writeln!(
                    out,
                    "  {:<16} {} ({}, {})",
                    r.id, r.name, r.network, r.operator
                )?;
            }
            writeln!(out, "stops and stations (sample network):")?;
            for s in &stops {
                writeln!(out, "  {:<16} {}", s.id, s.name)?;
            }
        }
    }
    Ok(())
}
