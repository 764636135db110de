//! Runs the `citycard` binary's standalone subcommands and checks their real output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use citycard_core::{ManualClock, Money, PersonId, Principal};
use citycard_ledger::{
    AccountId, AccountKind, CreateTransferResult, Ledger, NewAccount, NewTransfer, Owner,
    Reference, TransferId, WalletHolder, WalletLimits,
};
use citycard_sqlite::Database;
use citycard_sqlite::ledger::SqliteLedgerStore;
use serde_json::Value;

fn citycard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_citycard"))
}

fn run(args: &[&str]) -> Output {
    citycard().args(args).output().expect("the binary runs")
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    run_stdin_bytes(args, input.as_bytes())
}

fn run_stdin_bytes(args: &[&str], input: &[u8]) -> Output {
    let mut child = citycard()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // A command that fails on its arguments exits without reading: a broken pipe is fine.
    if let Err(e) = child.stdin.take().expect("stdin").write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("the binary finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "citycard-cli-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sample_taps() -> String {
    format!("{}/data/sample-taps.csv", env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------- help

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["fare", "--help"],
        &["fare", "quote", "--help"],
        &["fare", "stations", "--help"],
        &["fare", "check", "--help"],
        &["ridecode", "issue", "--help"],
        &["ridecode", "verify", "--help"],
        &["settle", "--help"],
        &["ledger", "export", "--help"],
        &["card", "balance", "--help"],
        &["card", "statement", "--help"],
    ] {
        let o = run(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
}

// ---------------------------------------------------------------- id

#[test]
fn id_check_reports_a_non_utf8_line_and_goes_on() {
    let mut input = b"11010519491231002X\n".to_vec();
    input.extend_from_slice(b"\xff\xfe11010519\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"11010519491231002X\r\n");
    let o = run_stdin_bytes(&["id", "check"], &input);
    assert_eq!(code(&o), 1, "an invalid line makes the run exit 1");
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&o));
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["valid"], true);
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["valid"], false);
    let error = lines[1]["error"].as_str().expect("error");
    assert!(error.contains("line 2 is not UTF-8"), "{error}");
    assert!(
        !lines[1]["input"]
            .as_str()
            .expect("input")
            .contains("11010519"),
        "masked"
    );
    assert_eq!(
        lines[2]["line"], 4,
        "the blank line 3 is skipped, line 4 still checked"
    );
    assert_eq!(lines[2]["valid"], true);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn id_check_of_valid_lines_exits_0() {
    let o = run_stdin(&["id", "check"], "11010519491231002X\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["valid"], true);
}

// ---------------------------------------------------------------- fare

#[test]
fn fare_quote_bus_then_metro_gets_the_transfer_discount() {
    // Bus 7 is a flat ¥2. Xianghu → Qianjiang Road is 14.1 km on the sample network
    // (Line 1 to City Station 11.6 km, Line 4 on 2.5 km): the 12–18 km bracket, ¥5,
    // less the ¥2 bus→metro transfer discount within 90 minutes: ¥3. Total ¥5.
    let o = run(&[
        "fare",
        "quote",
        "--date",
        "2026-11-26",
        "--leg",
        "b7:b_wulin@08:30",
        "--leg",
        "metro:m_xianghu:m_qianjiang@08:50-09:20",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("total ¥5.00"), "{text}");
    assert!(text.contains("discounts ¥2.00"), "{text}");
    assert!(text.contains("leg 1:") && text.contains("leg 2:"), "{text}");
    assert!(text.contains("14.100 km"), "{text}");
    assert!(text.contains("transfer discount ¥2.00"), "{text}");
}

/// A small GTFS-Fares v2 feed in USD with a bad row (an unknown timeframe).
fn usd_feed(dir: &TempDir) {
    for (name, text) in [
        ("stops.txt", "stop_id,stop_name\na,A\nb,B\n"),
        (
            "routes.txt",
            "route_id,agency_id,route_type,network_id\nbus,mta,3,core\nrail,mta,1,core\n",
        ),
        (
            "fare_media.txt",
            "fare_media_id,fare_media_name,fare_media_type\ncard,Card,2\napp,App,4\n",
        ),
        (
            "fare_products.txt",
            "fare_product_id,fare_product_name,amount,currency,fare_media_id\none,One way,2.00,USD,card\none,One way,1.75,USD,app\nxfer,Transfer,0.25,USD,\n",
        ),
        (
            "fare_leg_rules.txt",
            "leg_group_id,network_id,fare_product_id,from_timeframe_group_id\ng,core,one,\ng,core,one,nosuch\n",
        ),
        (
            "fare_transfer_rules.txt",
            "from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id\ng,g,-1,5400,1,0,xfer\n",
        ),
        ("citycard_settings.txt", "key,value\nutc_offset,-05:00\n"),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write feed");
    }
}

#[test]
fn fare_check_lists_errors_with_file_line_and_field_and_fails() {
    let dir = TempDir::new("feed-check");
    usd_feed(&dir);
    let o = run(&["fare", "check", dir.str(), "--format", "json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["errors"], 1);
    let first = &v["findings"][0];
    assert_eq!(first["file"], "fare_leg_rules.txt");
    assert_eq!(first["line"], 3);
    assert_eq!(first["field"], "from_timeframe_group_id");
    // A strict quote stops on it and says how to go on.
    let o = run(&[
        "fare",
        "quote",
        "--feed",
        dir.str(),
        "--leg",
        "bus:a:b@08:00-08:20",
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--lenient"), "{}", stderr(&o));
}

#[test]
fn fare_quote_on_any_feed_names_the_rules_that_priced_each_leg() {
    let dir = TempDir::new("feed-quote");
    usd_feed(&dir);
    let o = run(&[
        "fare",
        "quote",
        "--feed",
        dir.str(),
        "--lenient",
        "--media",
        "app",
        "--date",
        "2026-01-14",
        "--format",
        "json",
        "--leg",
        "bus:a:b@08:00-08:20",
        "--leg",
        "rail:b:a@08:30-08:50",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["currency"], "USD");
    // App one-way $1.75, then a 25-cent transfer (A + AB).
    assert_eq!(v["total"], "2.00");
    assert_eq!(v["legs"][0]["rule_line"], 2);
    assert_eq!(v["legs"][1]["transfer_rule_line"], 2);
    assert_eq!(v["legs"][1]["paid_minor_units"], 25);
    assert_eq!(v["left_out"][0]["line"], 3);
}

#[test]
fn fare_quote_accepts_station_names_and_json_output() {
    let o = run(&[
        "fare",
        "quote",
        "--date",
        "2026-11-26",
        "--format",
        "json",
        "--leg",
        "metro:Wulin Square:Qianjiang Road@08:00-08:20",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    // Wulin Square → Fengqi Road 1.4 km → Qianjiang Road 1.6 km: 3.0 km, the first bracket, ¥2.
    assert_eq!(v["total"], "2.00");
    assert_eq!(v["legs"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["legs"][0]["paid"], "2.00");
    assert!(
        v["legs"][0]["explain"]
            .as_str()
            .is_some_and(|s| s.contains("3.000 km"))
    );
}

#[test]
fn fare_quote_senior_concession_depends_on_the_peak() {
    // 70+ card: metro half fare in working-day peaks (07:00–08:30, end exclusive, by
    // entry time), otherwise free; designated buses free at any time.
    // 2026-11-26 is a Thursday.
    let at = |leg: &str| {
        let o = run(&[
            "fare",
            "quote",
            "--date",
            "2026-11-26",
            "--card-kind",
            "senior",
            "--age",
            "72",
            "--format",
            "json",
            "--leg",
            leg,
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        json(&o)["total"].as_str().map(str::to_owned)
    };
    assert_eq!(
        at("metro:m_xianghu:m_qianjiang@08:00-08:30").as_deref(),
        Some("2.50")
    );
    assert_eq!(
        at("metro:m_xianghu:m_qianjiang@08:30-09:00").as_deref(),
        Some("0.00")
    );
    assert_eq!(at("b7:b_wulin@08:00").as_deref(), Some("0.00"));
}

#[test]
fn fare_quote_reads_a_json_journey_from_stdin() {
    let journey = r#"{
        "date": "2026-11-26",
        "legs": [
            {"route": "b7", "from": "b_wulin", "board": "08:30"},
            {"network": "metro", "from": "m_xianghu", "to": "m_qianjiang", "board": "08:50", "alight": "09:20"}
        ]
    }"#;
    let o = run_stdin(
        &["fare", "quote", "--json", "-", "--format", "json"],
        journey,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["total"], "5.00");
    assert_eq!(v["discounts"], "2.00");
    assert_eq!(v["legs"][1]["paid"], "3.00");
}

#[test]
fn fare_quote_explicit_instants_alighting_before_boarding_is_an_error() {
    let journey = r#"{"legs": [{"network": "metro", "from": "m_xianghu", "to": "m_qianjiang",
        "board": "2026-11-26T09:20:00+08:00", "alight": "2026-11-26T08:50:00+08:00"}]}"#;
    let o = run_stdin(&["fare", "quote", "--json", "-"], journey);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("leg 1: alighting"), "{err}");
    assert!(err.contains("before boarding"), "{err}");
}

#[test]
fn fare_quote_bare_times_still_wrap_past_midnight() {
    // 23:50 → 00:20 is a 30-minute ride, not a negative one: ¥5 for 14.1 km.
    let o = run(&[
        "fare",
        "quote",
        "--date",
        "2026-11-26",
        "--format",
        "json",
        "--leg",
        "metro:m_xianghu:m_qianjiang@23:50-00:20",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["total"], "5.00");
}

#[test]
fn fare_quote_header_names_the_journey_date_of_explicit_instants() {
    let journey = r#"{"legs": [{"network": "metro", "from": "m_xianghu", "to": "m_qianjiang",
        "board": "2026-11-26T08:50:00+08:00", "alight": "2026-11-26T09:20:00+08:00"}]}"#;
    let o = run_stdin(&["fare", "quote", "--json", "-"], journey);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("total ¥5.00 (1 legs on 2026-11-26;"),
        "{text}"
    );
    let o = run_stdin(
        &["fare", "quote", "--json", "-", "--format", "json"],
        journey,
    );
    assert_eq!(json(&o)["date"], "2026-11-26");
}

#[test]
fn fare_quote_unknown_station_lists_valid_names() {
    let o = run(&[
        "fare",
        "quote",
        "--leg",
        "metro:m_xianghu:Nowhere@08:50-09:20",
    ]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.starts_with("citycard: unknown stop or station \"Nowhere\""),
        "{err}"
    );
    assert!(err.contains("m_xianghu"), "{err}");
    assert!(err.contains("citycard fare stations"), "{err}");
}

#[test]
fn fare_quote_unknown_route_lists_routes() {
    let o = run(&["fare", "quote", "--leg", "b999:b_wulin@08:30"]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(err.contains("unknown route or network \"b999\""), "{err}");
    assert!(err.contains("b7") && err.contains("metro"), "{err}");
}

#[test]
fn fare_quote_bad_arguments_are_usage_errors() {
    for args in [
        &["fare", "quote"][..],
        &["fare", "quote", "--leg", "b7-b_wulin-08:30"],
        &["fare", "quote", "--leg", "b7:b_wulin@8h30"],
        &[
            "fare",
            "quote",
            "--leg",
            "b7:b_wulin@08:30",
            "--date",
            "26/11/2026",
        ],
        &[
            "fare",
            "quote",
            "--leg",
            "b7:b_wulin@08:30",
            "--card-kind",
            "vip",
        ],
        &[
            "fare",
            "quote",
            "--leg",
            "b7:b_wulin@08:30",
            "--month-spend",
            "-5",
        ],
    ] {
        let o = run(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let o = run_stdin(&["fare", "quote", "--json", "-", "--age", "70"], "{}");
    assert_eq!(code(&o), 2, "rider flags belong in the JSON journey");
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    let o = run_stdin(
        &["fare", "quote", "--json", "-"],
        "{\"legs\": [{\"from\": 1}]}",
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("not a JSON journey"), "{}", stderr(&o));
}

#[test]
fn fare_stations_lists_the_network() {
    let o = run(&["fare", "stations", "--format", "json"]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    let stops = v["stops"].as_array().expect("stops");
    assert!(
        stops
            .iter()
            .any(|s| s["id"] == "m_xianghu" && s["name"] == "Xianghu")
    );
    let routes = v["routes"].as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|r| r["id"] == "b7" && r["network"] == "bus")
    );
    assert!(
        v["networks"]
            .as_array()
            .expect("networks")
            .iter()
            .any(|n| n["id"] == "metro")
    );
}

// ---------------------------------------------------------------- ride codes

fn issue(dir: &TempDir, out: &Path, card: &str) -> String {
    let o = run(&[
        "ridecode",
        "issue",
        "--data-dir",
        dir.str(),
        "--card",
        card,
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let payload = stdout(&o).trim().to_owned();
    assert!(
        !payload.is_empty()
            && payload
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not base64url: {payload}"
    );
    payload
}

fn verify(dir: &TempDir, payload: &str) -> (i32, Value) {
    let o = run(&[
        "ridecode",
        "verify",
        "--data-dir",
        dir.str(),
        "--format",
        "json",
        payload,
    ]);
    (code(&o), json(&o))
}

#[test]
fn ridecode_issue_png_then_verify_then_replay_is_refused() {
    let dir = TempDir::new("rc-png");
    let png = dir.path().join("code.png");
    let payload = issue(&dir, &png, "42");
    let bytes = std::fs::read(&png).expect("png written");
    assert_eq!(bytes.get(..8), Some(&b"\x89PNG\r\n\x1a\n"[..]));

    let (c, v) = verify(&dir, &payload);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["decision"], "accept");
    // The reader sees the credential's keyed reference, not card 42 (cr…2a).
    assert_ne!(v["card"], "cr000000000000002a");
    assert!(
        v["card"].as_str().is_some_and(|c| c.starts_with("cr")),
        "{v}"
    );
    assert_eq!(v["direction"], "in");

    // A second run of the reader remembers the code (DIR/ridecode/seen).
    let (c, v) = verify(&dir, &payload);
    assert_eq!(c, 1);
    assert_eq!(v["accepted"], false);
    assert_eq!(v["reason"], "replayed");
    assert!(dir.path().join("ridecode/seen").is_file());
}

#[test]
fn ridecode_text_output_and_terminal_qr() {
    let dir = TempDir::new("rc-text");
    let svg = dir.path().join("code.svg");
    let o = run(&[
        "ridecode",
        "issue",
        "--data-dir",
        dir.str(),
        "--out",
        svg.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains('█') || text.contains('▀') || text.contains('▄'),
        "{text}"
    );
    let payload = text
        .lines()
        .find_map(|l| l.strip_prefix("payload: "))
        .expect("payload line")
        .to_owned();
    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg_text.contains("<svg"), "{svg_text}");

    let o = run(&["ridecode", "verify", "--data-dir", dir.str(), &payload]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("accepted: card reference cr"),
        "{}",
        stdout(&o)
    );
    let o = run(&["ridecode", "verify", "--data-dir", dir.str(), &payload]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).starts_with("rejected: replayed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn ridecode_tampered_payload_is_refused_as_tampered() {
    let dir = TempDir::new("rc-tamper");
    let payload = issue(&dir, &dir.path().join("c.svg"), "7");
    // Change one character in the middle (inside the signed part), keeping base64url.
    let mut chars: Vec<char> = payload.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let (c, v) = verify(&dir, &tampered);
    assert_eq!(c, 1);
    assert_eq!(v["reason"], "tampered", "{v}");
    // The genuine code is still good afterwards: a refusal does not enter the replay cache.
    let (c, v) = verify(&dir, &payload);
    assert_eq!(c, 0, "{v}");
}

#[test]
fn ridecode_code_age_is_checked_against_the_reader_clock() {
    let dir = TempDir::new("rc-age");
    let payload = issue(&dir, &dir.path().join("c.png"), "9");
    let at = |offset: i64| (chrono::Utc::now() + chrono::Duration::seconds(offset)).to_rfc3339();
    let decide = |offset: i64| {
        let o = run(&[
            "ridecode",
            "verify",
            "--data-dir",
            dir.str(),
            "--format",
            "json",
            "--at",
            &at(offset),
            &payload,
        ]);
        (code(&o), json(&o))
    };
    // Older than 60 s plus 30 s skew: expired.
    let (c, v) = decide(200);
    assert_eq!((c, v["reason"].as_str()), (1, Some("expired")), "{v}");
    // More than 30 s ahead of the reader: from the future.
    let (c, v) = decide(-200);
    assert_eq!(
        (c, v["reason"].as_str()),
        (1, Some("from_the_future")),
        "{v}"
    );
    // Past the 30-day credential: the credential check comes first.
    let (c, v) = decide(31 * 24 * 3600);
    assert_eq!(
        (c, v["reason"].as_str()),
        (1, Some("credential_expired")),
        "{v}"
    );
    // Refusals are not remembered: the code is still good now.
    let (c, v) = decide(0);
    assert_eq!(c, 0, "{v}");
    let o = run(&[
        "ridecode",
        "verify",
        "--data-dir",
        dir.str(),
        "--at",
        "yesterday",
        &payload,
    ]);
    assert_eq!(code(&o), 2);
}

#[test]
fn ridecode_malformed_payload_is_refused() {
    let dir = TempDir::new("rc-malformed");
    issue(&dir, &dir.path().join("c.png"), "1");
    for bad in ["not a code!", "AgEAAAAB"] {
        let (c, v) = verify(&dir, bad);
        assert_eq!(c, 1);
        assert_eq!(v["reason"], "malformed", "{bad}: {v}");
    }
}

#[test]
fn ridecode_keys_persist_across_runs() {
    let dir = TempDir::new("rc-persist");
    let p1 = issue(&dir, &dir.path().join("1.png"), "5");
    let keys1 =
        std::fs::read_to_string(dir.path().join("ridecode/public-keys.json")).expect("keys");
    let p2 = issue(&dir, &dir.path().join("2.png"), "5");
    let keys2 =
        std::fs::read_to_string(dir.path().join("ridecode/public-keys.json")).expect("keys");
    assert_eq!(keys1, keys2, "the issuer keys are reused");
    assert_ne!(p1, p2);
    // The SM2 credential is the first 119 bytes (6 header, 33 compressed user key,
    // 8 card, 8 validity, 64 issuer signature) = 158 whole base64 characters; the same
    // credential is reused. The timestamp, counter and signature that follow differ.
    assert_eq!(p1.get(..158), p2.get(..158));
    // Both codes verify, and each only once.
    assert_eq!(verify(&dir, &p1).0, 0);
    assert_eq!(verify(&dir, &p2).0, 0);
    assert_eq!(verify(&dir, &p1).0, 1);
    // Another data directory has another issuer: the code is not ours there.
    let other = TempDir::new("rc-other");
    issue(&other, &other.path().join("x.png"), "5");
    let (c, v) = verify(&other, &p1);
    assert_eq!(c, 1);
    assert_eq!(v["reason"], "tampered", "{v}");
}

#[test]
fn ridecode_usage_errors() {
    let dir = TempDir::new("rc-usage");
    let gif = dir.path().join("code.gif");
    let o = run(&[
        "ridecode",
        "issue",
        "--data-dir",
        dir.str(),
        "--out",
        gif.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("must end in .png or .svg"),
        "{}",
        stderr(&o)
    );
    assert!(!gif.exists());
    assert!(
        !dir.path().join("ridecode").exists(),
        "nothing is created on a usage error"
    );

    let o = run(&["ridecode", "issue", "--data-dir", dir.str()]);
    assert_eq!(code(&o), 2, "--out is required");

    let o = run(&["ridecode", "verify", "--data-dir", dir.str(), "AAAA"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("no issuer public keys"),
        "{}",
        stderr(&o)
    );

    issue(&dir, &dir.path().join("c.png"), "1");
    let o = run(&[
        "ridecode",
        "verify",
        "--data-dir",
        dir.str(),
        "--station",
        "Atlantis",
        "AAAA",
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("unknown station"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- settle

#[test]
fn settle_the_sample_morning() {
    let o = run(&["settle", &sample_taps(), "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["taps_in_file"], 20);
    let day = &v["days"][0];
    assert_eq!(day["day"], "2026-11-26");
    // Trips by card (see the file): 1001 bus + metro, 1002 metro, 1003 metro without
    // tap-out, 1004 sectioned bus + metro, 1005 water bus + bus, 1006 bus (its second tap
    // 90 s later on the same bus is refused) + metro, 1007 two metro rides.
    assert_eq!(day["taps"]["taps"], 20);
    assert_eq!(day["taps"]["trips"], 12);
    assert_eq!(day["taps"]["incomplete"], 1);
    assert_eq!(day["taps"]["repeats_refused"], 1);
    assert_eq!(day["trips_settled"], 12);
    assert_eq!(day["maximum_fares"], 1);
    // Base fares: 1001 2+2 (3.0 km), 1002 5 (15.8 km), 1003 8 (maximum), 1004 2 (2
    // sections) + 5, 1005 3 + 2, 1006 2 + 5 (15.0 km), 1007 8 (32.2 km) + 6 (21.1 km) = 50.
    assert_eq!(day["base_fares"], "50.00");
    // Four bus/water→metro/bus transfers within 90 minutes, ¥2 each; none metro→metro.
    assert_eq!(day["transfer_discounts"], "8.00");
    assert_eq!(day["discounts"], "8.00");
    assert_eq!(day["charged"], "42.00");
    assert_eq!(day["arrears"], "0.00");
    // Revenue: bus 2+2+0+2, metro 0+5+8+3+3+8+6, water 3.
    assert_eq!(day["revenue_by_operator"]["hz_bus"], "6.00");
    assert_eq!(day["revenue_by_operator"]["hz_metro"], "33.00");
    assert_eq!(day["revenue_by_operator"]["hz_water"], "3.00");
}

#[test]
fn settle_with_low_balances_leaves_arrears() {
    let o = run(&[
        "settle",
        &sample_taps(),
        "--balance",
        "3.00",
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let day = &json(&o)["days"][0];
    // With ¥3 each: 1001 pays its ¥2 bus (its metro leg is free after the discount),
    // 1004 its ¥2 bus, 1005 its ¥3 water bus, 1006 its ¥2 bus; every other fare
    // (5, 8, 3, 3, 8, 6) goes into arrears, on five cards.
    assert_eq!(day["charged"], "9.00");
    assert_eq!(day["arrears"], "33.00");
    assert_eq!(day["cards_in_arrears"], 5);
}

#[test]
fn settle_text_report() {
    let o = run(&["settle", &sample_taps(), "--date", "2026-11-26"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("day 2026-11-26"), "{text}");
    assert!(text.contains("¥42.00"), "{text}");
    assert!(
        text.contains("hz_metro") && text.contains("¥33.00"),
        "{text}"
    );
    // stderr is not a terminal here: no progress bar drawn.
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn settle_errors() {
    let o = run(&["settle", &sample_taps(), "--date", "2026-11-27"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("no taps on 2026-11-27"),
        "{}",
        stderr(&o)
    );

    let o = run(&["settle", "/nonexistent/taps.csv"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("cannot read /nonexistent/taps.csv"),
        "{}",
        stderr(&o)
    );

    let bad = "card,direction,network,stop,route,vehicle,reader,at\n1,sideways,metro,m_wulin,,,1,2026-11-26T08:00:00+08:00\n";
    let o = run_stdin(&["settle", "-"], bad);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(err.contains("line 2") && err.contains("direction"), "{err}");

    let o = run(&["settle", &sample_taps(), "--balance", "lots"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--balance"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- ledger export

const CLEARING: AccountId = AccountId::new(1);
const WALLET: AccountId = AccountId::new(2);
const METRO: AccountId = AccountId::new(3);

/// A small ledger: ¥50 top-up, a ¥4 hold posted at ¥3, a ¥2.50 ride, a voided ¥1 hold.
fn build_ledger(dir: &Path) {
    let db = Database::open(dir.join("citycard.db")).expect("database");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 0, 30, 0));
        let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db)), clock)
            .await
            .expect("ledger");
        let system = Principal::System;
        let person = PersonId::parse("psn-1").expect("person id");
        let results = ledger
            .create_accounts(
                &system,
                vec![
                    NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING)
                        .with_owner(Owner::Organisation("alipay".into())),
                    WalletLimits::default().wallet(WALLET, WalletHolder::Registered, Some(person)),
                    NewAccount::new(METRO, AccountKind::OPERATOR_REVENUE)
                        .with_owner(Owner::Organisation("hz_metro".into())),
                ],
            )
            .await
            .expect("accounts");
        assert!(results.iter().all(|r| r.is_success()), "{results:?}");
        let t = |n| TransferId::new(n);
        let results = ledger
            .create_transfers(
                &system,
                vec![
                    NewTransfer::new(t(10), CLEARING, WALLET, Money::from_yuan(50), 1)
                        .with_reference(Reference::top_up_order("ord-1").expect("reference"))
                        .with_memo("top-up for Zhang San"),
                    NewTransfer::pending(t(11), WALLET, METRO, Money::from_yuan(4), 2, 3600),
                    NewTransfer::post(t(12), t(11), Some(Money::from_yuan(3))),
                    NewTransfer::new(t(13), WALLET, METRO, Money::from_fen(250), 2)
                        .with_reference(Reference::trip("T-1").expect("reference")),
                    NewTransfer::pending(t(14), WALLET, METRO, Money::from_yuan(1), 2, 3600),
                    NewTransfer::void(t(15), t(14)),
                ],
            )
            .await
            .expect("transfers");
        assert!(
            results.iter().all(|r| *r == CreateTransferResult::Ok),
            "{results:?}"
        );
    });
}

fn fen(amount: &str) -> i64 {
    Money::parse(amount)
        .unwrap_or_else(|e| panic!("{amount}: {e}"))
        .fen()
}

/// Transactions of a journal: (header, postings as (account, fen)).
fn transactions(text: &str, posting_indent: &str) -> Vec<(String, Vec<(String, i64)>)> {
    let mut out: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("20") && line.contains(" * ") {
            out.push((line.to_owned(), Vec::new()));
        } else if let Some(rest) = line.strip_prefix(posting_indent)
            && let Some(current) = out.last_mut()
            && !rest.starts_with(' ')
            && rest.ends_with(" CNY")
        {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "posting {line:?}");
            current.1.push((parts[0].to_owned(), fen(parts[1])));
        }
    }
    out
}

#[test]
fn ledger_export_hledger() {
    let dir = TempDir::new("ledger-hledger");
    build_ledger(dir.path());
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "hledger",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        !text.contains("Zhang"),
        "memos (personal data) are not exported"
    );
    let txs = transactions(&text, "    ");
    // Posted movements only: the top-up, the post of the hold, the ride (holds and voids move nothing).
    assert_eq!(txs.len(), 3, "{text}");
    for (header, postings) in &txs {
        assert!(header.starts_with("2026-11-26 * "), "{header}");
        assert_eq!(postings.len(), 2, "{header}");
        assert_eq!(
            postings.iter().map(|p| p.1).sum::<i64>(),
            0,
            "balanced: {header}"
        );
    }
    assert!(txs[0].0.contains("topup:ord-1"));
    assert!(txs[2].0.contains("trip:T-1"));
    let wallet = "liabilities:citycard:e-wallet:person-psn-1:2";
    assert!(text.contains(&format!("account {wallet}\n")), "{text}");
    assert!(
        text.contains("account assets:citycard:top-up-clearing:alipay:1\n"),
        "{text}"
    );
    assert!(
        text.contains("account liabilities:citycard:operator-fares-payable:hz-metro:3\n"),
        "{text}"
    );
    // The wallet's balance: -(50 - 3 - 2.50) = -44.50 (a credit balance, money held for the cardholder).
    let balance: i64 = txs
        .iter()
        .flat_map(|t| t.1.iter())
        .filter(|p| p.0 == wallet)
        .map(|p| p.1)
        .sum();
    assert_eq!(balance, -4450);
    // Where hledger is installed, its strict check (declared accounts and commodities,
    // balanced transactions) must pass and its balance must agree.
    let file = dir.path().join("books.journal");
    std::fs::write(&file, &text).expect("write journal");
    let journal = file.to_str().expect("utf-8");
    if let Ok(check) = Command::new("hledger")
        .args(["-f", journal, "check", "--strict"])
        .output()
    {
        assert!(
            check.status.success(),
            "hledger check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let bal = Command::new("hledger")
            .args(["-f", journal, "balance", "--flat", "--no-total", wallet])
            .output()
            .expect("hledger balance");
        let bal = String::from_utf8_lossy(&bal.stdout);
        assert!(bal.contains("-44.50 CNY"), "{bal}");
    }
}

#[test]
fn ledger_export_beancount() {
    let dir = TempDir::new("ledger-beancount");
    build_ledger(dir.path());
    let out = dir.path().join("books.beancount");
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "beancount",
        "--data-dir",
        dir.str(),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(text.contains("option \"operating_currency\" \"CNY\""));
    let legal = |name: &str| {
        let mut parts = name.split(':');
        let root_ok = matches!(
            parts.next(),
            Some("Assets" | "Liabilities" | "Equity" | "Income" | "Expenses")
        );
        root_ok
            && parts.clone().count() >= 1
            && parts.all(|p| {
                p.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    let opens: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" open "))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(parts.len(), 4, "{l}");
            assert_eq!(parts[3], "CNY", "{l}");
            parts[2]
        })
        .collect();
    assert_eq!(opens.len(), 3, "{text}");
    for name in &opens {
        assert!(legal(name), "not a beancount account name: {name}");
    }
    let first_tx = text.find(" * ").expect("transactions");
    assert!(
        text.rfind(" open ").expect("opens") < first_tx,
        "open before use"
    );
    let txs = transactions(&text, "  ");
    assert_eq!(txs.len(), 3, "{text}");
    for (header, postings) in &txs {
        assert!(header.ends_with('"'), "narration quoted: {header}");
        assert_eq!(postings.len(), 2);
        assert_eq!(
            postings.iter().map(|p| p.1).sum::<i64>(),
            0,
            "balanced: {header}"
        );
        for (account, _) in postings {
            assert!(opens.contains(&account.as_str()), "{account} is opened");
        }
    }
    assert!(
        opens.contains(&"Liabilities:Citycard:EWallet:Person-psn-1:Id2"),
        "{opens:?}"
    );
    // Where beancount is installed, its own checker must accept the file.
    if let Ok(check) = Command::new("bean-check").arg(&out).output() {
        assert!(
            check.status.success(),
            "bean-check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn ledger_export_csv() {
    let dir = TempDir::new("ledger-csv");
    build_ledger(dir.path());
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "csv",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(
        header,
        [
            "date",
            "timestamp",
            "transfer_id",
            "kind",
            "reference",
            "code",
            "debit_account",
            "credit_account",
            "amount",
            "currency"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let ids: Vec<&str> = rows.iter().map(|r| r[2]).collect();
    assert_eq!(ids, ["10", "12", "13"]);
    assert_eq!(rows[1][3], "post");
    assert_eq!(rows[1][8], "3.00");
    assert_eq!(rows[2][4], "trip:T-1");
    assert_eq!(rows[2][8], "2.50");
    let wallet = "liabilities:citycard:e-wallet:person-psn-1:2";
    let into: i64 = rows
        .iter()
        .filter(|r| r[7] == wallet)
        .map(|r| fen(r[8]))
        .sum();
    let out_of: i64 = rows
        .iter()
        .filter(|r| r[6] == wallet)
        .map(|r| fen(r[8]))
        .sum();
    assert_eq!(into - out_of, 4450);
}

/// The card system's own accounts, opened as the facade opens them, and the
/// insurance agency funding a medical account.
fn build_system_ledger(dir: &Path) -> PersonId {
    let db = Database::open(dir.join("citycard.db")).expect("database");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let person = PersonId::parse("psn-7").expect("person id");
    rt.block_on(async {
        let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 0, 30, 0));
        let ledger = Arc::new(
            Ledger::open(Arc::new(SqliteLedgerStore::new(db)), clock)
                .await
                .expect("ledger"),
        );
        let accounts = citycard::Accounts::new(ledger.clone(), WalletLimits::default());
        accounts
            .open_system_accounts()
            .await
            .expect("system accounts");
        accounts
            .open_medical_accounts(&person)
            .await
            .expect("medical accounts");
        accounts.open_operator("hz_metro").await.expect("operator");
        accounts.open_hospital("h1").await.expect("hospital");
        let extra = vec![
            NewAccount::new(AccountId::new(91), AccountKind::FEES)
                .with_owner(Owner::Organisation("issuer".into())),
            NewAccount::new(AccountId::new(92), AccountKind::PROMOTIONS)
                .with_owner(Owner::Organisation("issuer".into())),
        ];
        let r = ledger
            .create_accounts(&Principal::System, extra)
            .await
            .expect("accounts");
        assert!(r.iter().all(|r| r.is_success()), "{r:?}");
        let r = ledger
            .create_transfers(
                &Principal::System,
                vec![NewTransfer::new(
                    TransferId::new(1),
                    citycard::Accounts::insurance_funding(),
                    citycard::Accounts::medical_current(&person),
                    Money::from_yuan(200),
                    6,
                )],
            )
            .await
            .expect("transfers");
        assert_eq!(r, vec![CreateTransferResult::Ok]);
    });
    person
}

#[test]
fn ledger_export_places_every_account_kind_as_the_issuer_sees_it() {
    use citycard::Accounts;
    let dir = TempDir::new("ledger-chart");
    let person = build_system_ledger(dir.path());
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "hledger",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let declared = |id: AccountId| -> String {
        let suffix = format!(":{id}");
        text.lines()
            .filter_map(|l| l.strip_prefix("account "))
            .find(|name| name.ends_with(&suffix))
            .unwrap_or_else(|| panic!("account {id} declared: {text}"))
            .to_owned()
    };
    let expect = [
        (
            Accounts::insurance_funding(),
            "assets:citycard:insurance-funding:",
        ),
        (
            Accounts::clearing(&citycard_core::Platform::Alipay),
            "assets:citycard:top-up-clearing:",
        ),
        (
            Accounts::medical_current(&person),
            "liabilities:citycard:medical-current-year:",
        ),
        (
            Accounts::medical_accumulated(&person),
            "liabilities:citycard:medical-accumulated:",
        ),
        (Accounts::pooled_fund(), "liabilities:citycard:pooled-fund:"),
        (Accounts::refunds(), "liabilities:citycard:refunds:"),
        (
            Accounts::revenue("hz_metro"),
            "liabilities:citycard:operator-fares-payable:",
        ),
        (
            Accounts::hospital("h1"),
            "liabilities:citycard:hospital-payable:",
        ),
        (AccountId::new(91), "income:citycard:fees:"),
        (AccountId::new(92), "expenses:citycard:promotions:"),
        (Accounts::control(), "equity:citycard:control:"),
    ];
    for (id, prefix) in expect {
        let name = declared(id);
        assert!(
            name.starts_with(prefix),
            "{name} should start with {prefix}"
        );
    }
    assert!(!text.contains("promotions:medical-insurance"), "{text}");
    // Funding a medical account: the asset (money the agency pays in) is debited,
    // the liability (held for the insured person) credited.
    let txs = transactions(&text, "    ");
    assert_eq!(txs.len(), 1, "{text}");
    assert!(
        txs[0].1[0]
            .0
            .starts_with("assets:citycard:insurance-funding:")
    );
    assert_eq!(txs[0].1[0].1, 20000);
    assert!(
        txs[0].1[1]
            .0
            .starts_with("liabilities:citycard:medical-current-year:")
    );
}

#[test]
fn ledger_export_errors() {
    let dir = TempDir::new("ledger-missing");
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "csv",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).starts_with("citycard: no ledger at"),
        "{}",
        stderr(&o)
    );
    assert!(
        !dir.path().join("citycard.db").exists(),
        "no empty database is created"
    );

    let o = run(&["ledger", "export", "--data-dir", dir.str()]);
    assert_eq!(code(&o), 2, "--format is required");
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "xlsx",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 2);

    std::fs::write(
        dir.path().join("citycard.db"),
        b"this is not a database, just text",
    )
    .expect("write");
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "csv",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("not a citycard database"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ledger_export_of_an_empty_file_is_refused_and_leaves_it_empty() {
    let dir = TempDir::new("ledger-empty");
    let db = dir.path().join("citycard.db");
    std::fs::write(&db, b"").expect("write");
    let o = run(&[
        "ledger",
        "export",
        "--format",
        "csv",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("is not a citycard database"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::metadata(&db).expect("metadata").len(),
        0,
        "not migrated"
    );
}

#[test]
fn ledger_export_reads_a_read_only_store_without_changing_it() {
    let dir = TempDir::new("ledger-read-only");
    build_ledger(dir.path());
    let db = dir.path().join("citycard.db");
    let mut perms = std::fs::metadata(&db).expect("metadata").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).expect("chmod");
    let before = std::fs::read(&db).expect("read");
    for format in ["csv", "hledger", "beancount"] {
        let o = run(&[
            "ledger",
            "export",
            "--format",
            format,
            "--data-dir",
            dir.str(),
        ]);
        assert_eq!(code(&o), 0, "{format}: {}", stderr(&o));
        assert!(stdout(&o).contains("trip:T-1"), "{format}: {}", stdout(&o));
    }
    assert!(
        std::fs::read(&db).expect("read") == before,
        "the store is unchanged"
    );
    let wal = dir.path().join("citycard.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "no write in the WAL"
    );
}

// ---------------------------------------------------------------- card

#[test]
fn card_balance_and_statement_read_a_demo_store_read_only() {
    let dir = TempDir::new("card");
    let o = run(&["demo", "--data-dir", dir.str()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let db = dir.path().join("citycard.db");
    let mut perms = std::fs::metadata(&db).expect("metadata").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).expect("chmod");
    let before = std::fs::read(&db).expect("read");
    let first = citycard::demo::card_number(1001);
    let replacement = citycard::demo::replacement_number(1);

    // The first card: topped up, two fares dated by their rides, a bill, the rest carried away.
    let o = run(&[
        "card",
        "statement",
        "--card",
        &first,
        "--data-dir",
        dir.str(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let st = json(&o);
    assert_eq!(st["opening_balance"], "0.00");
    let entries = st["entries"].as_array().expect("entries");
    let total: i64 = entries
        .iter()
        .map(|e| fen(e["amount"].as_str().expect("amount")))
        .sum();
    assert_eq!(total, fen(st["closing_balance"].as_str().expect("closing")));
    assert!(
        entries
            .iter()
            .any(|e| e["what"] == "top-up via alipay" && e["amount"] == citycard::demo::TOP_UP_YUAN)
    );
    let fares: Vec<&Value> = entries
        .iter()
        .filter(|e| e["what"].as_str().is_some_and(|w| w.starts_with("fare")))
        .collect();
    assert_eq!(fares.len(), 2, "{entries:?}");
    for f in &fares {
        let ride = f["ride_at"].as_str().expect("ride time");
        assert!(
            ride < f["at"].as_str().expect("settled"),
            "ridden before settled: {f}"
        );
    }
    assert!(!stdout(&o).contains(&first), "the card number is masked");
    let carried = entries.last().expect("an entry");
    assert_eq!(carried["what"], "balance carried to the replacement card");
    assert_eq!(st["closing_balance"], "0.00");

    // The replacement holds what was carried.
    let o = run(&[
        "card",
        "balance",
        "--card",
        &replacement,
        "--data-dir",
        dir.str(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bal = json(&o);
    assert_eq!(
        fen(bal["available"].as_str().expect("available")),
        -fen(carried["amount"].as_str().expect("amount"))
    );
    let o = run(&[
        "card",
        "balance",
        "--card",
        &replacement,
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("card 330"), "{}", stdout(&o));
    assert!(!stdout(&o).contains(&replacement), "masked: {}", stdout(&o));
    let o = run(&[
        "card",
        "statement",
        "--card",
        &first,
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("(settled 21:00)"), "{}", stdout(&o));

    assert!(
        std::fs::read(&db).expect("read") == before,
        "the store is unchanged"
    );
    let wal = dir.path().join("citycard.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "no write in the WAL"
    );
}

#[test]
fn card_command_errors_name_what_to_fix() {
    let dir = TempDir::new("card-errors");
    let o = run(&[
        "card",
        "balance",
        "--card",
        "3301000000001001",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no store at"), "{}", stderr(&o));
    assert!(!dir.path().join("citycard.db").exists(), "nothing created");

    build_ledger(dir.path());
    let o = run(&[
        "card",
        "balance",
        "--card",
        "3301000000009999",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("no e-wallet for card"), "{err}");
    assert!(!err.contains("3301000000009999"), "masked: {err}");

    let o = run(&[
        "card",
        "balance",
        "--card",
        "not-a-card",
        "--data-dir",
        dir.str(),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("card number"), "{}", stderr(&o));

    let o = run(&[
        "card",
        "statement",
        "--card",
        "3301000000001001",
        "--data-dir",
        dir.str(),
        "--from",
        "2026-11-27",
        "--to",
        "2026-11-26",
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("before --from"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- demo words

#[test]
fn demo_language_follows_the_locale_unless_given() {
    let dir = TempDir::new("demo-lang");
    let demo = |lang: Option<&str>, locale: &str| {
        let mut c = citycard();
        c.args(["demo", "--data-dir", dir.str()])
            .env_remove("LC_ALL")
            .env("LANG", locale);
        if let Some(l) = lang {
            c.args(["--lang", l]);
        }
        c.output().expect("the binary runs")
    };
    let o = demo(None, "zh_CN.UTF-8");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("在市民卡柜台登记并发卡"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("下一步："), "{}", stdout(&o));
    let o = demo(Some("en"), "zh_CN.UTF-8");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("what to do next: "), "{}", stdout(&o));
    assert!(!stdout(&o).contains("下一步"), "{}", stdout(&o));
    let o = demo(None, "en_US.UTF-8");
    assert!(stdout(&o).contains("People enrolled"), "{}", stdout(&o));
    let o = demo(Some("fr"), "C");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("use zh or en"), "{}", stderr(&o));
}
