//! The conformance suite of the transactional outbox ([`citycard_core::Outbox`]).

/// Expands into the outbox suite. `$factory` is an `async fn() ->
/// (Commit, Arc<dyn Outbox>)` where `Commit: Fn(CoreChanges) -> impl
/// Future<Output = Result<(), StoreError>>` commits core changes the way the
/// backend's stores do (one transaction), and the outbox reads the same store.
#[macro_export]
macro_rules! outbox_conformance {
    ($factory:ident) => {
        $crate::outbox_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::outbox_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod outbox_conformance {
            use $crate::__private::citycard_core::{
                CoreChanges, EventKind, Fingerprint, IdempotencyKey, KeyOutcome, NewEvent,
                Platform,
            };

            fn at(secs: i64) -> $crate::__private::chrono::DateTime<$crate::__private::chrono::Utc> {
                $crate::__private::chrono::DateTime::from_timestamp_micros(
                    (1_790_000_000 + secs) * 1_000_000 + 123_456,
                )
                .unwrap()
            }

            fn event(card: &str, n: i64, platform: Option<Platform>) -> NewEvent {
                NewEvent::new(
                    EventKind::BalanceChanged,
                    card,
                    platform,
                    at(n),
                    $crate::__private::serde_json::json!({"balance": format!("{n}.00"), "n": n}),
                )
            }

            fn changes(events: Vec<NewEvent>) -> CoreChanges {
                let mut c = CoreChanges::default();
                c.events = events;
                c
            }

            #[tokio::test]
            async fn events_are_numbered_per_card_in_commit_order_and_read_back_as_written() {
                if !$available() {
                    return;
                }
                let (commit, outbox) = super::$factory().await;
                let written = [
                    vec![event("c-1", 1, Some(Platform::Alipay)), event("c-2", 2, None)],
                    vec![event("c-1", 3, Some(Platform::WechatPay))],
                    vec![event("c-2", 4, Some(Platform::Alipay)), event("c-1", 5, None)],
                ];
                for w in &written {
                    commit(changes(w.clone())).await.unwrap();
                }
                let read = outbox.unpublished(100).await.unwrap();
                let all: Vec<NewEvent> = written.concat();
                assert_eq!(read.len(), all.len());
                let ids: Vec<u64> = read.iter().map(|e| e.id).collect();
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
                for (r, w) in read.iter().zip(&all) {
                    assert_eq!(&r.event, w);
                }
                let sequences: Vec<(String, u64)> = read
                    .iter()
                    .map(|e| (e.event.card.clone(), e.sequence))
                    .collect();
                assert_eq!(
                    sequences,
                    [
                        ("c-1".to_owned(), 1),
                        ("c-2".to_owned(), 1),
                        ("c-1".to_owned(), 2),
                        ("c-2".to_owned(), 2),
                        ("c-1".to_owned(), 3),
                    ]
                );
                assert_eq!(outbox.unpublished(2).await.unwrap().len(), 2);
                outbox.mark_published(&ids[..3]).await.unwrap();
                let left: Vec<u64> = outbox
                    .unpublished(100)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.id)
                    .collect();
                assert_eq!(left, ids[3..]);
            }

            #[tokio::test]
            async fn a_refused_commit_leaves_no_event() {
                if !$available() {
                    return;
                }
                let (commit, outbox) = super::$factory().await;
                let key = IdempotencyKey::parse("k-1").unwrap();
                let fingerprint = Fingerprint::of_bytes(b"request");
                let mut first = changes(vec![event("c-1", 1, Some(Platform::Alipay))]);
                first
                    .outcomes
                    .push(KeyOutcome::new("test.op", key.clone(), fingerprint, &1u32, at(1)).unwrap());
                commit(first).await.unwrap();
                let mut again = changes(vec![event("c-1", 2, Some(Platform::Alipay))]);
                again
                    .outcomes
                    .push(KeyOutcome::new("test.op", key, fingerprint, &1u32, at(2)).unwrap());
                assert!(commit(again).await.is_err());
                let read = outbox.unpublished(100).await.unwrap();
                assert_eq!(read.len(), 1);
                // The refused commit took no sequence number either.
                commit(changes(vec![event("c-1", 3, None)])).await.unwrap();
                let read = outbox.unpublished(100).await.unwrap();
                assert_eq!(read.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
            }

            #[tokio::test]
            async fn deliveries_fail_back_off_die_and_are_replayed() {
                if !$available() {
                    return;
                }
                let (commit, outbox) = super::$factory().await;
                commit(changes(vec![
                    event("c-1", 1, Some(Platform::Alipay)),
                    event("c-1", 2, None),
                    event("c-1", 3, Some(Platform::WechatPay)),
                ]))
                .await
                .unwrap();
                let pending = outbox.undelivered(100).await.unwrap();
                assert_eq!(pending.len(), 2, "an event for no platform has no delivery");
                assert!(pending.iter().all(|d| d.attempts == 0 && !d.dead));
                assert_eq!(pending[0].next_attempt, at(1));
                let (alipay, wechat) = (pending[0].event.id, pending[1].event.id);

                outbox.mark_failed(alipay, at(60), "answered 503", false).await.unwrap();
                let d = outbox.undelivered(100).await.unwrap();
                assert_eq!(d[0].attempts, 1);
                assert_eq!(d[0].next_attempt, at(60));
                assert_eq!(d[0].last_error.as_deref(), Some("answered 503"));

                outbox.mark_failed(alipay, at(120), "no answer", true).await.unwrap();
                let d = outbox.undelivered(100).await.unwrap();
                assert_eq!(d.iter().map(|d| d.event.id).collect::<Vec<_>>(), [wechat]);
                let dead = outbox.dead_letters(Some(&Platform::Alipay)).await.unwrap();
                assert_eq!(dead.len(), 1);
                assert_eq!((dead[0].event.id, dead[0].attempts, dead[0].dead), (alipay, 2, true));
                assert!(outbox.dead_letters(Some(&Platform::WechatPay)).await.unwrap().is_empty());
                assert_eq!(outbox.dead_letters(None).await.unwrap().len(), 1);

                assert!(outbox.replay(alipay, at(200)).await.unwrap());
                assert!(!outbox.replay(alipay, at(200)).await.unwrap(), "no longer dead");
                assert!(!outbox.replay(wechat, at(200)).await.unwrap(), "never dead");
                let d = outbox.undelivered(100).await.unwrap();
                assert_eq!(d.len(), 2);
                assert_eq!((d[0].attempts, d[0].next_attempt), (0, at(200)));

                outbox.mark_delivered(&[alipay, wechat]).await.unwrap();
                assert!(outbox.undelivered(100).await.unwrap().is_empty());
                assert!(outbox.dead_letters(None).await.unwrap().is_empty());
                assert_eq!(outbox.unpublished(100).await.unwrap().len(), 3, "delivered is not published");
            }
        }
    };
}
