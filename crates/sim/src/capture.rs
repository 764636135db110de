//! Every `tracing` line of a run, captured as text, so the checker can look
//! for personal data in it (the host installs the subscriber; the simulator
//! is the host). No subscriber crate is in the workspace: this one keeps the
//! fields of open spans and writes one line per event with the fields of the
//! spans it is in.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The captured lines, shared with the subscriber.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Takes the lines captured since the last call.
    pub fn drain(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

#[derive(Default)]
struct Spans {
    fields: HashMap<u64, String>,
    stack: Vec<u64>,
}

/// A subscriber that writes every event (all levels) to [`Lines`].
pub struct Capture {
    lines: Lines,
    next: AtomicU64,
    spans: Mutex<Spans>,
}

impl Capture {
    /// A subscriber and the lines it fills.
    pub fn new() -> (Capture, Lines) {
        let lines = Lines::default();
        (
            Capture {
                lines: lines.clone(),
                next: AtomicU64::new(1),
                spans: Mutex::new(Spans::default()),
            },
            lines,
        )
    }

    fn spans(&self) -> std::sync::MutexGuard<'_, Spans> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fields = Fields(span.metadata().name().to_owned());
        span.record(&mut fields);
        self.spans().fields.insert(id, fields.0);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        if let Some(f) = self.spans().fields.get_mut(&span.into_u64()) {
            f.push_str(&fields.0);
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = format!(
            "{} {}:",
            event.metadata().level(),
            event.metadata().target()
        );
        {
            let spans = self.spans();
            for id in &spans.stack {
                if let Some(f) = spans.fields.get(id) {
                    let _ = write!(line, " [{f}]");
                }
            }
        }
        let mut fields = Fields(line);
        event.record(&mut fields);
        self.lines.push(fields.0);
    }

    fn enter(&self, span: &Id) {
        self.spans().stack.push(span.into_u64());
    }

    fn exit(&self, span: &Id) {
        let mut spans = self.spans();
        if let Some(at) = spans.stack.iter().rposition(|s| *s == span.into_u64()) {
            spans.stack.remove(at);
        }
    }

    fn try_close(&self, span: Id) -> bool {
        let mut spans = self.spans();
        let id = span.into_u64();
        if !spans.stack.contains(&id) {
            spans.fields.remove(&id);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_spans_fields() {
        let (capture, lines) = Capture::new();
        tracing::subscriber::with_default(capture, || {
            let span = tracing::info_span!("wallet.top_up", card = "card-1");
            let _g = span.enter();
            tracing::info!(amount = 5, "recorded");
        });
        let got = lines.drain();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("card=card-1") && got[0].contains("amount=5"),
            "{got:?}"
        );
    }
}
