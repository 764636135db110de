//! `citycard ridecode issue` and `citycard ridecode verify`: signed ride codes
//! (乘车码) with keys kept in a data directory, and an offline reader.
//!
//! Files under `DIR/ridecode/`:
//! - `issuer.json`: the issuer's keys with their secrets (mode 0600 on Unix);
//! - `public-keys.json`: the issuer's public keys, all a reader needs;
//! - `wallet-<card>.json`: the phone-side user key and credential of a card;
//! - `seen`: the replay cache of `verify` (`reference timestamp counter expiry`
//!   per line, the reference being the code's keyed card reference), so a code
//!   accepted once is refused as replayed on a later run. A damaged cache is
//!   named with the line at fault; deleting it starts an empty cache.
//!
//! The issuer of a data directory has issuer id 1 ([`CLI_ISSUER_ID`]); a
//! directory written before issuer ids existed keeps its keys (issuer 0).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use citycard_transit::codes::{self, Algorithm, Issuer, RideCodeWallet, SigningKey};
use citycard_transit::{
    CardRef, Credential, Decision, FareEngine, IssuerPublicKey, Reader, ReaderConfig, Rejection,
    RideCode, SecretKeyBytes, TapDirection, TapPlace, qr,
};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{CliError, OutputFormat, default_data_dir};

/// How long a new issuer key certifies credentials.
const ISSUER_KEY_DAYS: i64 = 365;
/// How long a credential is valid.
const CREDENTIAL_DAYS: i64 = 30;
/// How far a phone's clock may differ from the reader's.
const CLOCK_SKEW_SECONDS: u32 = 30;
/// The ride-code issuer id of a new data directory.
pub const CLI_ISSUER_ID: u16 = 1;

/// Arguments of `citycard ridecode issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Where to write the QR code: a `.png` or `.svg` file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The data directory holding the issuer and wallet keys (under `ridecode/`).
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// The card reference number the code is for (an opaque number, not a card number).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub card: u64,
    /// PNG pixels per QR module (1 to 32).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub scale: u32,
    /// Print only the payload (no terminal QR code or notes).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `citycard ridecode verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The base64url payload printed by `issue`.
    pub payload: String,
    /// The data directory holding the issuer's public keys and the replay cache.
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// The metro station of the reader (id or name).
    #[arg(long, default_value = "m_wulin")]
    pub station: String,
    /// How old a code may be, in seconds.
    #[arg(long, default_value_t = 60)]
    pub max_age: u32,
    /// Decide as of this instant (RFC 3339) instead of now, e.g. to replay a log.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    public: IssuerPublicKey,
    secret_hex: String,
}

#[derive(Serialize, Deserialize)]
struct IssuerFile {
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct WalletFile {
    card: u64,
    algorithm: Algorithm,
    secret_hex: String,
    credential: Credential,
    issuer_key_id: u32,
    credential_valid_until: DateTime<Utc>,
    last_code_at: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

fn domain(e: impl std::fmt::Display) -> CliError {
    CliError::Domain(e.to_string())
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Domain(format!(
        "{} is damaged ({e}); restore it or move the ridecode directory away to start afresh",
        path.display()
    ))
}

/// Writes a file readable only by its owner (on Unix), replacing it atomically.
fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| corrupt(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(corrupt(path, "it is not UTF-8 text"))
        }
        Err(e) => Err(CliError::Domain(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// The replay cache is damaged: name it, the line, and what deleting it means.
fn corrupt_seen(path: &Path, what: &str) -> CliError {
    CliError::Domain(format!(
        "the ride-code replay cache {} is damaged ({what}); delete that file to start an empty cache (codes accepted in the last few minutes could then be accepted once more), or restore it from a backup",
        path.display()
    ))
}

fn load_issuer(path: &Path) -> Result<Option<Issuer>, CliError> {
    let Some(file) = read_json::<IssuerFile>(path)? else {
        return Ok(None);
    };
    let keys = file
        .keys
        .into_iter()
        .map(|k| {
            unhex(&k.secret_hex)
                .map(|b| (k.public, SecretKeyBytes::new(b)))
                .ok_or_else(|| corrupt(path, "a secret is not hexadecimal"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Issuer::import(keys).map(Some).map_err(|e| corrupt(path, e))
}

fn save_issuer(dir: &Path, issuer: &Issuer) -> Result<(), CliError> {
    let file = IssuerFile {
        keys: issuer
            .export()
            .into_iter()
            .map(|(public, secret)| StoredKey {
                public,
                secret_hex: hex(secret.expose()),
            })
            .collect(),
    };
    write_private(
        &dir.join("issuer.json"),
        &serde_json::to_string_pretty(&file)?,
    )?;
    let public = serde_json::to_string_pretty(&issuer.public_keys())?;
    std::fs::write(dir.join("public-keys.json"), public)?;
    Ok(())
}

/// The issuer of `dir`, with a current key valid for a new credential (rotated in if needed).
fn issuer_for(dir: &Path, now: DateTime<Utc>) -> Result<Issuer, CliError> {
    let mut issuer =
        load_issuer(&dir.join("issuer.json"))?.unwrap_or_else(|| Issuer::new(CLI_ISSUER_ID));
    let current_ok = issuer.public_keys().last().is_some_and(|k| {
        k.valid_from <= now && k.valid_until >= now + Duration::days(CREDENTIAL_DAYS)
    });
    if !current_ok {
        issuer
            .rotate(
                Algorithm::Sm2,
                now - Duration::days(1),
                now + Duration::days(ISSUER_KEY_DAYS),
            )
            .map_err(domain)?;
        save_issuer(dir, &issuer)?;
    } else if !dir.join("public-keys.json").exists() {
        save_issuer(dir, &issuer)?;
    }
    Ok(issuer)
}

fn ensure_dir(dir: &Path) -> Result<PathBuf, CliError> {
    let rc = dir.join("ridecode");
    std::fs::create_dir_all(&rc).map_err(|e| {
        CliError::Usage(format!(
            "cannot create data directory {}: {e}",
            rc.display()
        ))
    })?;
    Ok(rc)
}

/// The image format chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageFormat {
    Png,
    Svg,
}

fn image_format(path: &Path) -> Result<ImageFormat, CliError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(ImageFormat::Png),
        Some("svg") => Ok(ImageFormat::Svg),
        _ => Err(CliError::Usage(format!(
            "--out {}: the file must end in .png or .svg",
            path.display()
        ))),
    }
}

/// Runs `citycard ridecode issue`.
pub fn issue(args: &IssueArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let format = image_format(&args.out)?;
    if args.card == 0 {
        return Err(CliError::Usage("--card must be a positive number".into()));
    }
    let dir = ensure_dir(&args.data_dir)?;
    let mut now = Utc::now();
    let issuer = issuer_for(&dir, now)?;
    let key_id = issuer
        .current_key_id()
        .ok_or_else(|| domain("the issuer has no key"))?;
    let wallet_path = dir.join(format!("wallet-{}.json", args.card));
    let stored: Option<WalletFile> = read_json(&wallet_path)?;
    let card = CardRef(args.card);
    let (key, mut file) = match stored {
        Some(w)
            if w.issuer_key_id == key_id
                && w.card == args.card
                && w.credential.as_bytes().first() == Some(&codes::VERSION)
                && w.credential_valid_until > now + Duration::hours(1) =>
        {
            let secret = unhex(&w.secret_hex)
                .ok_or_else(|| corrupt(&wallet_path, "the secret is not hexadecimal"))?;
            let key = SigningKey::from_secret_bytes(w.algorithm, &SecretKeyBytes::new(secret))
                .map_err(|e| corrupt(&wallet_path, e))?;
            (key, w)
        }
        previous => {
            // A new user key (first run, a rotated issuer key or an expiring credential).
            let key = match previous {
                Some(w) => unhex(&w.secret_hex)
                    .and_then(|s| {
                        SigningKey::from_secret_bytes(w.algorithm, &SecretKeyBytes::new(s)).ok()
                    })
                    .map_or_else(|| SigningKey::generate(Algorithm::Sm2), Ok)
                    .map_err(domain)?,
                None => SigningKey::generate(Algorithm::Sm2).map_err(domain)?,
            };
            let valid_until = now + Duration::days(CREDENTIAL_DAYS);
            let credential = issuer
                .certify(
                    &key.public_key(),
                    card,
                    now - Duration::hours(1),
                    valid_until,
                )
                .map_err(domain)?;
            let file = WalletFile {
                card: args.card,
                algorithm: key.algorithm(),
                secret_hex: hex(key.to_secret_bytes().expose()),
                credential,
                issuer_key_id: key_id,
                credential_valid_until: valid_until,
                last_code_at: 0,
            };
            (key, file)
        }
    };
    // A fresh wallet restarts its counter, so two runs within one second would make
    // codes the reader's replay cache cannot tell apart: wait for the next second.
    if now.timestamp() <= file.last_code_at {
        let next = DateTime::from_timestamp(file.last_code_at + 1, 0).unwrap_or(now);
        if let Ok(wait) = (next - now).to_std() {
            std::thread::sleep(wait.min(std::time::Duration::from_secs(2)));
        }
        now = Utc::now();
    }
    let mut wallet = RideCodeWallet::new(key, file.credential.clone()).map_err(domain)?;
    let code = wallet.generate(now).map_err(domain)?;
    file.last_code_at = now.timestamp();
    write_private(&wallet_path, &serde_json::to_string_pretty(&file)?)?;
    match format {
        ImageFormat::Png => {
            let png = qr::to_png(&code, args.scale).map_err(domain)?;
            std::fs::write(&args.out, png)
        }
        ImageFormat::Svg => std::fs::write(&args.out, qr::to_svg(&code).map_err(domain)?),
    }
    .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", args.out.display())))?;
    let text = code.to_text();
    if args.quiet {
        writeln!(out, "{text}")?;
    } else {
        writeln!(
            out,
            "ride code for card {card} (issuer {} key {}) written to {}; readers accept it for about a minute",
            codes::issuer_of_key(key_id),
            key_id & 0xffff,
            args.out.display()
        )?;
        writeln!(out, "{}", qr::to_terminal(&code).map_err(domain)?)?;
        writeln!(out, "payload: {text}")?;
        writeln!(
            out,
            "verify with: citycard ridecode verify --data-dir {} {text}",
            args.data_dir.display()
        )?;
    }
    Ok(())
}

/// The persistent replay cache of `verify`.
struct Seen {
    path: PathBuf,
    entries: BTreeSet<(u64, u32, u32, i64)>,
}

impl Seen {
    fn load(path: PathBuf) -> Result<Self, CliError> {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(corrupt_seen(&path, "it is not UTF-8 text"));
            }
            Err(e) => {
                return Err(CliError::Domain(format!(
                    "cannot read the ride-code replay cache {}: {e}",
                    path.display()
                )));
            }
        };
        let mut entries = BTreeSet::new();
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let parsed = match f.as_slice() {
                [c, t, n, e] => (|| {
                    Some((
                        c.parse().ok()?,
                        t.parse().ok()?,
                        n.parse().ok()?,
                        e.parse().ok()?,
                    ))
                })(),
                _ => None,
            };
            entries.insert(parsed.ok_or_else(|| {
                corrupt_seen(
                    &path,
                    &format!(
                        "line {} is not `reference timestamp counter expiry`",
                        number + 1
                    ),
                )
            })?);
        }
        Ok(Self { path, entries })
    }

    fn contains(&self, card: u64, ts: u32, counter: u32) -> bool {
        self.entries
            .iter()
            .any(|(c, t, n, _)| (*c, *t, *n) == (card, ts, counter))
    }

    fn add_and_save(&mut self, entry: (u64, u32, u32, i64), now: i64) -> Result<(), CliError> {
        self.entries.retain(|e| e.3 >= now);
        self.entries.insert(entry);
        let text: String = self
            .entries
            .iter()
            .map(|(c, t, n, e)| format!("{c} {t} {n} {e}\n"))
            .collect();
        write_private(&self.path, &text)
    }
}

/// Why a code was refused, in words.
fn explain_rejection(r: &Rejection) -> String {
    match r {
        Rejection::Malformed => "malformed: not a ride code of a known shape".into(),
        Rejection::UnsupportedVersion => {
            "unsupported version: a payload version this reader does not know".into()
        }
        Rejection::WrongIssuer { key_id } => format!(
            "wrong issuer: signed under key {} of issuer {}, which this reader does not hold",
            key_id & 0xffff,
            codes::issuer_of_key(*key_id)
        ),
        Rejection::IssuerKeyInactive { key_id } => {
            format!(
                "issuer key inactive: key {} of issuer {} is retired or not yet active",
                key_id & 0xffff,
                codes::issuer_of_key(*key_id)
            )
        }
        Rejection::Tampered => {
            "tampered: a signature does not verify, the code or its credential was altered".into()
        }
        Rejection::CredentialExpired => "credential expired: issue a new ride code".into(),
        Rejection::CredentialNotYetValid => "credential not yet valid".into(),
        Rejection::Expired => {
            "expired: the code is older than the reader accepts, issue a new one".into()
        }
        Rejection::FromTheFuture => {
            "from the future: the code's time is ahead of the reader's clock".into()
        }
        Rejection::Replayed => "replayed: this exact code was already accepted".into(),
        Rejection::Denied { deny } => {
            format!("denied: the card is on the deny list ({})", deny.code())
        }
        Rejection::RepeatOnVehicle => {
            "repeat on vehicle: the card already boarded this vehicle".into()
        }
    }
}

/// The verify command's output.
#[derive(Debug, Serialize)]
struct VerifyOut {
    accepted: bool,
    #[serde(flatten)]
    decision: Decision,
    card: Option<CardRef>,
    station: Option<String>,
    message: String,
}

/// Runs `citycard ridecode verify`; returns whether the code was accepted.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let dir = args.data_dir.join("ridecode");
    let keys_path = dir.join("public-keys.json");
    let keys: Vec<IssuerPublicKey> = read_json(&keys_path)?.ok_or_else(|| {
        CliError::Domain(format!(
            "no issuer public keys at {}: run `citycard ridecode issue --data-dir {}` first",
            keys_path.display(),
            args.data_dir.display()
        ))
    })?;
    let engine = FareEngine::hangzhou().map_err(|e| domain(format!("fare data: {e}")))?;
    let n = engine.network();
    let metro = n
        .network("metro")
        .ok_or_else(|| domain("the fare data has no metro network"))?;
    let stop = n
        .stop(args.station.trim())
        .or_else(|| {
            n.stops()
                .iter()
                .position(|s| s.name.eq_ignore_ascii_case(args.station.trim()))
                .and_then(|i| n.stop(&n.stops()[i].id))
        })
        .ok_or_else(|| {
            CliError::Usage(format!(
                "unknown station {:?}; run `citycard fare stations` for the list (e.g. m_wulin, m_xianghu)",
                args.station
            ))
        })?;
    let station_id = n.stop_info(stop).map(|s| s.id.clone());
    let mut reader = Reader::new(
        ReaderConfig {
            reader: 1,
            place: TapPlace::Station {
                network: metro,
                stop,
            },
            direction: TapDirection::In,
            max_code_age_seconds: args.max_age,
            clock_skew_seconds: CLOCK_SKEW_SECONDS,
            repeat_window_seconds: 0,
        },
        &keys,
    );
    let now = match &args.at {
        None => Utc::now(),
        Some(t) => DateTime::parse_from_rfc3339(t.trim())
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| CliError::Usage(format!("--at {t:?} is not an RFC 3339 time: {e}")))?,
    };
    let mut decision = match RideCode::from_text(&args.payload) {
        Ok(code) => reader.decide(code.as_bytes(), now),
        Err(_) => Decision::Reject(Rejection::Malformed),
    };
    let mut card = None;
    if let Decision::Accept(tap) = &decision {
        card = Some(tap.card);
        let bytes = RideCode::from_text(&args.payload).map_err(domain)?;
        let parsed =
            codes::parse(bytes.as_bytes()).map_err(|_| domain("accepted code does not parse"))?;
        let mut seen = Seen::load(dir.join("seen"))?;
        if seen.contains(parsed.card.0, parsed.timestamp, parsed.counter) {
            decision = Decision::Reject(Rejection::Replayed);
        } else {
            let expiry = i64::from(parsed.timestamp)
                + i64::from(args.max_age)
                + 2 * i64::from(CLOCK_SKEW_SECONDS);
            seen.add_and_save(
                (parsed.card.0, parsed.timestamp, parsed.counter, expiry),
                now.timestamp(),
            )?;
        }
    }
    let accepted = matches!(decision, Decision::Accept(_));
    let message = match &decision {
        Decision::Accept(tap) => format!(
            "accepted: card reference {} tapped in at {} (reader {}) at {}",
            tap.card,
            station_id.as_deref().unwrap_or("?"),
            tap.reader,
            tap.at.to_rfc3339()
        ),
        Decision::Reject(r) => format!("rejected: {}", explain_rejection(r)),
    };
    match args.format {
        OutputFormat::Text => writeln!(out, "{message}")?,
        OutputFormat::Json => {
            let doc = VerifyOut {
                accepted,
                decision,
                card: if accepted { card } else { None },
                station: station_id,
                message,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(accepted)
}
