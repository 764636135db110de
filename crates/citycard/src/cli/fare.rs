//! `citycard fare quote`, `citycard fare stations` and `citycard fare check`:
//! price a journey on the embedded Hangzhou fare rules or on any GTFS-Fares v2
//! feed (`--feed DIR`), list the names a journey may use, and check a feed.

use std::io::Write;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use citycard_core::{Money, china_offset, civil_date};
use citycard_transit::{
    CardKind, Diagnostic, FareData, FareEngine, Journey, Leg, LoadMode, Medium, Rider, Severity,
    SpendSoFar,
};
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
    /// A GTFS-Fares v2 feed directory to price on instead of the embedded Hangzhou rules.
    #[arg(long, value_name = "DIR")]
    pub feed: Option<String>,
    /// Load the feed without its offending rows (listed) instead of stopping at the first error.
    #[arg(long, requires = "feed")]
    pub lenient: bool,
    /// The fare medium: a `fare_media_id` of the feed, or card, ride_code, bank_card, cash, paper_ticket.
    #[arg(long, value_name = "ID", conflicts_with = "ride_code")]
    pub media: Option<String>,
    /// A `rider_category_id` of the feed (instead of the category the card kind gives).
    #[arg(long, value_name = "ID")]
    pub rider_category: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Arguments of `citycard fare stations`.
#[derive(Debug, Args)]
pub struct StationsArgs {
    /// A GTFS-Fares v2 feed directory instead of the embedded Hangzhou rules.
    #[arg(long, value_name = "DIR")]
    pub feed: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Arguments of `citycard fare check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The feed directory (GTFS text files).
    #[arg(value_name = "DIR")]
    pub dir: String,
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
    /// The `fare_product_id` charged.
    product_id: String,
    /// The line in `fare_leg_rules.txt` of the rule that priced the leg (header = 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_line: Option<u64>,
    /// The line in `fare_transfer_rules.txt` of the transfer rule applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_rule_line: Option<u64>,
    /// What the leg costs in the currency's minor units (exact in every currency).
    paid_minor_units: i64,
    #[serde(flatten)]
    fare: citycard_transit::LegFare,
}

/// The JSON output of a quote.
#[derive(Debug, Serialize)]
struct QuoteOut {
    date: NaiveDate,
    /// The feed's ISO 4217 currency.
    currency: String,
    /// Decimal amounts in that currency.
    total: String,
    discounts: String,
    legs: Vec<LegOut>,
    /// Rows a lenient load left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    left_out: Vec<Diagnostic>,
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

/// The embedded Hangzhou engine, or a feed's (with the rows a lenient load left out).
fn engine(feed: Option<&str>, lenient: bool) -> Result<(FareEngine, Vec<Diagnostic>), CliError> {
    let Some(dir) = feed else {
        let e = FareEngine::hangzhou().map_err(|e| CliError::Domain(format!("fare data: {e}")))?;
        return Ok((e, Vec::new()));
    };
    let data = FareData::from_dir(dir).map_err(|e| usage(format!("feed {dir}: {e}")))?;
    let mode = if lenient {
        LoadMode::Lenient
    } else {
        LoadMode::Strict
    };
    let (engine, found) = FareEngine::load_with(&data, mode)
        .map_err(|e| usage(format!("feed {dir}: {e} (or load it with --lenient)")))?;
    let left_out = found.into_iter().filter(|d| d.row_left_out).collect();
    Ok((engine, left_out))
}

/// A medium from a feed's `fare_media_id` or a medium code.
fn resolve_medium(engine: &FareEngine, given: &str) -> Result<Medium, CliError> {
    let g = given.trim();
    engine
        .fare_media(g)
        .or_else(|| Medium::ALL.into_iter().find(|m| m.code() == g))
        .ok_or_else(|| {
            usage(format!(
                "unknown fare media {g:?}: give a fare_media_id of the feed or one of cash, paper_ticket, card, bank_card, ride_code"
            ))
        })
}

/// Runs `citycard fare quote`.
pub fn quote(args: &QuoteArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (engine, left_out) = engine(args.feed.as_deref(), args.lenient)?;
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
    let mut journey = journey;
    if let Some(m) = &args.media {
        journey.rider.medium = resolve_medium(&engine, m)?;
    }
    let category = match &args.rider_category {
        None => None,
        Some(c) => Some(engine.rider_category(c.trim()).ok_or_else(|| {
            usage(format!(
                "unknown rider category {c:?}: give a rider_category_id of rider_categories.txt"
            ))
        })?),
    };
    // The journey's date is the Hangzhou civil date of its first boarding: an
    // RFC 3339 instant names its own day, whatever `date` (or today) says.
    let date = journey.legs.first().map_or(date, |l| civil_date(l.board));
    let quote = match category {
        None => engine.quote(&journey),
        Some(c) => {
            let mut legs = Vec::with_capacity(journey.legs.len());
            engine
                .price_for_category_into(
                    &journey.rider,
                    c,
                    SpendSoFar::month(journey.month_spend_before),
                    &journey.legs,
                    &mut legs,
                )
                .and_then(|total| {
                    let mut base = Money::ZERO;
                    for l in &legs {
                        base = base.checked_add(l.base)?;
                    }
                    Ok(citycard_transit::Quote {
                        discounts: base.checked_sub(total)?,
                        legs,
                        total,
                    })
                })
        }
    }
    .map_err(|e| CliError::Domain(format!("cannot price the journey: {e}")))?;
    let explain = quote.explain(&engine);
    let currency = engine.currency();
    let decimal = |m: Money| currency.decimal(m);
    match args.format {
        OutputFormat::Text => {
            for d in &left_out {
                writeln!(out, "left out: {d}")?;
            }
            writeln!(
                out,
                "total {} ({} legs on {date}; discounts {})",
                currency.format(quote.total),
                quote.legs.len(),
                currency.format(quote.discounts)
            )?;
            for line in &explain {
                writeln!(out, "  {line}")?;
            }
        }
        OutputFormat::Json => {
            let doc = QuoteOut {
                date,
                currency: currency.code().to_owned(),
                total: decimal(quote.total),
                discounts: decimal(quote.discounts),
                legs: quote
                    .legs
                    .into_iter()
                    .zip(explain)
                    .map(|(fare, explain)| LegOut {
                        explain,
                        product_id: engine.product_id(fare.product).unwrap_or("?").to_owned(),
                        rule_line: fare.rule.and_then(|r| engine.leg_rule_line(r)),
                        transfer_rule_line: fare
                            .transfer
                            .and_then(|t| engine.transfer_rule_line(t.rule)),
                        paid_minor_units: fare.paid.fen(),
                        fare,
                    })
                    .collect(),
                left_out,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(())
}

/// Runs `citycard fare check`: true when the feed has no errors.
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let data =
        FareData::from_dir(&args.dir).map_err(|e| usage(format!("feed {}: {e}", args.dir)))?;
    let found = citycard_transit::fares::check(&data)
        .map_err(|e| usage(format!("feed {}: {e}", args.dir)))?;
    let errors = found
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = found.len() - errors;
    match args.format {
        OutputFormat::Text => {
            for d in &found {
                writeln!(out, "{d}")?;
            }
            writeln!(
                out,
                "{}: {errors} error(s), {warnings} warning(s){}",
                args.dir,
                if errors > 0 {
                    "; a strict load stops at the first error, --lenient leaves those rows out"
                } else {
                    ""
                }
            )?;
        }
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct CheckOut<'a> {
                errors: usize,
                warnings: usize,
                findings: &'a [Diagnostic],
            }
            let doc = CheckOut {
                errors,
                warnings,
                findings: &found,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(errors == 0)
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
    let (engine, _) = engine(args.feed.as_deref(), false)?;
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
