//! Top-ups through the API on SQLite: the HTTP idempotency record commits
//! in the effect's transaction, and the events commit with the change.

mod support;

use citycard::core::{EventKind, Platform};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_top_up_is_one_write_per_request_and_its_events_commit_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(citycard::CityCard::builder().sqlite(dir.path().join("c.db"))).await;
    let (_, binding) = bound(&s).await;
    let db = s.city.database().unwrap().clone();
    let before_events = s.city.outbox().unpublished(1000).await.unwrap().len();

    let commits = db.commits();
    let order = s
        .alipay
        .send(post(
            "/v1/top-up-orders",
            json!({"binding": binding, "amount": "50.00"}),
            "order-1",
        ))
        .await;
    assert_eq!(order.status, 201, "{}", order.body);
    assert_eq!(
        db.commits() - commits,
        1,
        "the order is one write transaction"
    );

    let commits = db.commits();
    let paid = s
        .alipay
        .send(post(
            "/v1/top-up-orders/order-1/payment",
            json!({"trade_no": "T1", "amount": "50.00", "status": "paid"}),
            "order-1-paid",
        ))
        .await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(
        db.commits() - commits,
        1,
        "the payment is one write transaction"
    );

    // The same notification again: answered from the record, nothing written.
    let commits = db.commits();
    let again = s
        .alipay
        .send(post(
            "/v1/top-up-orders/order-1/payment",
            json!({"trade_no": "T1", "amount": "50.00", "status": "paid"}),
            "order-1-paid",
        ))
        .await;
    assert_eq!((again.status, &again.body), (200, &paid.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(db.commits(), commits);
    // Every response names its request.
    assert!(again.header("x-request-id").unwrap().starts_with("req-"));
    assert_ne!(again.header("x-request-id"), paid.header("x-request-id"));

    // The events of the top-up, committed with it, in the card's order.
    let events = s.city.outbox().unpublished(1000).await.unwrap();
    let new: Vec<_> = events[before_events..].to_vec();
    let kinds: Vec<_> = new.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::BalanceChanged, EventKind::TopUpCompleted],
        "{new:?}"
    );
    assert!(
        new.iter()
            .all(|e| e.event.platform == Some(Platform::Alipay))
    );
    assert_eq!(new[0].event.data["balance"], "50.00");
    assert_eq!(new[1].event.data["transfer"], paid.body["transfer"]);
    assert_eq!(new[1].sequence, new[0].sequence + 1);

    // A second order: the card's sequence goes on; nothing for a replay.
    s.alipay
        .send(post(
            "/v1/top-up-orders",
            json!({"binding": binding, "amount": "20.00"}),
            "order-2",
        ))
        .await;
    let paid = s
        .alipay
        .send(post(
            "/v1/top-up-orders/order-2/payment",
            json!({"trade_no": "T2", "amount": "20.00", "status": "paid"}),
            "order-2-paid",
        ))
        .await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    let events = s.city.outbox().unpublished(1000).await.unwrap();
    let new: Vec<_> = events[before_events..].to_vec();
    assert_eq!(new.len(), 4);
    assert_eq!(new[2].event.data["balance"], "70.00");
    let sequences: Vec<u64> = new.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (sequences[0]..sequences[0] + 4).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payment_is_stored_under_its_key_without_events() {
    let s = start().await;
    let (_, binding) = bound(&s).await;
    s.alipay
        .send(post(
            "/v1/top-up-orders",
            json!({"binding": binding, "amount": "5000.00"}),
            "big",
        ))
        .await;
    let before = s.city.outbox().unpublished(1000).await.unwrap().len();
    let notify = post(
        "/v1/top-up-orders/big/payment",
        json!({"trade_no": "T", "amount": "5000.00", "status": "paid"}),
        "big-paid",
    );
    let refused = s.alipay.send(notify.clone()).await;
    assert!(refused.status >= 400, "{}", refused.body);
    let again = s.alipay.send(notify).await;
    assert_eq!((again.status, &again.body), (refused.status, &refused.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        s.city.outbox().unpublished(1000).await.unwrap().len(),
        before
    );
}
