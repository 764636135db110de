//! The platform API against a real server on 127.0.0.1 with a real HTTP client.

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cardholder_journey_register_verify_bind_pass_top_up_records_unbind() {
    let s = start().await;
    // A fresh account is not verified.
    let a = s
        .alipay
        .send(post(
            "/v1/accounts",
            json!({"external_id": "2088000000000001"}),
            "a-0",
        ))
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["real_name"]["verified"], false);

    let (account, binding) = bound(&s).await;
    let shown = s.alipay.send(get(format!("/v1/accounts/{account}"))).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["real_name"]["verified"], true);

    // The pass: masked number, services, balance with its as-of instant.
    let pass = s
        .alipay
        .send(get(format!("/v1/bindings/{binding}/pass")))
        .await;
    assert_eq!(pass.status, 200, "{}", pass.body);
    let masked = pass.body["card_number_masked"].as_str().unwrap();
    assert!(!masked.contains(&CARD_NUMBER[4..12]), "{masked}");
    assert!(masked.ends_with(&CARD_NUMBER[12..]), "{masked}");
    assert_eq!(pass.body["state"], "active");
    assert!(
        pass.body["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "wallet")
    );
    assert_eq!(pass.body["balance"]["amount"], "0.00");
    assert_eq!(pass.body["balance"]["as_of"], "2026-11-26T01:00:00Z");

    // Two top-up orders, each paid by the platform's notification (sent twice).
    for (order, amount) in [("order-1", "50.00"), ("order-2", "20.00")] {
        let o = s
            .alipay
            .send(post(
                "/v1/top-up-orders",
                json!({"binding": binding, "amount": amount}),
                order,
            ))
            .await;
        assert_eq!(o.status, 201, "{}", o.body);
        assert_eq!(o.body["id"], order);
        assert_eq!(o.body["state"], "awaiting_payment");
        let mut transfers = Vec::new();
        for attempt in 0..2 {
            s.clock.advance(chrono::Duration::seconds(1));
            let paid = s
                .alipay
                .send(post(
                    format!("/v1/top-up-orders/{order}/payment"),
                    json!({"trade_no": format!("T{order}"), "amount": amount, "status": "paid"}),
                    &format!("{order}-notify-{attempt}"),
                ))
                .await;
            assert_eq!(paid.status, 200, "{}", paid.body);
            assert_eq!(paid.body["state"], "paid");
            transfers.push(paid.body["transfer"].clone());
        }
        assert_eq!(
            transfers[0], transfers[1],
            "a repeated notification moves money once"
        );
        let shown = s
            .alipay
            .send(get(format!("/v1/top-up-orders/{order}")))
            .await;
        assert_eq!(shown.body["state"], "paid");
    }
    let pass = s
        .alipay
        .send(get(format!("/v1/bindings/{binding}/pass")))
        .await;
    assert_eq!(pass.body["balance"]["amount"], "70.00");
    assert_eq!(pass.body["balance"]["as_of"], "2026-11-26T01:00:04Z");
    let refreshed = s
        .alipay
        .send(Req {
            method: "POST",
            path: format!("/v1/bindings/{binding}/pass/refresh"),
            ..Req::default()
        })
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.body["amount"], "70.00");

    // Records, one per page, oldest first.
    let first = s
        .alipay
        .send(get(format!("/v1/bindings/{binding}/records?limit=1")))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["records"][0]["amount"], "+50.00");
    assert_eq!(first.body["records"][0]["kind"], "top_up");
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = s
        .alipay
        .send(get(format!(
            "/v1/bindings/{binding}/records?limit=1&cursor={cursor}"
        )))
        .await;
    assert_eq!(second.body["records"][0]["amount"], "+20.00");
    assert_eq!(second.body["records"][0]["balance_after"], "70.00");
    assert!(second.body["next_cursor"].is_null());

    // Unbinding (consent withdrawn): the pass shows no balance any more.
    let removed = s
        .alipay
        .send(Req {
            method: "DELETE",
            path: format!("/v1/bindings/{binding}"),
            key: Some("unbind-1".into()),
            ..Req::default()
        })
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["state"], "removed");
    assert_eq!(removed.body["removal"], "user_unbound");
    let pass = s
        .alipay
        .send(get(format!("/v1/bindings/{binding}/pass")))
        .await;
    assert_eq!(pass.body["state"], "removed");
    assert!(pass.body["balance"].is_null());
    let list = s
        .alipay
        .send(get(format!("/v1/bindings?account={account}")))
        .await;
    assert_eq!(list.body["bindings"][0]["state"], "removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_id_number_is_refused_with_the_next_step_in_chinese_or_english() {
    let s = start().await;
    let (account, _) = bound(&s).await;
    let mut digits: Vec<char> = s.id_number.reveal().chars().collect();
    digits[16] = if digits[16] == '1' { '2' } else { '1' };
    let wrong: String = digits.into_iter().collect();
    let body = json!({
        "account": account, "card_number": CARD_NUMBER, "id_number": wrong, "consent": consent(),
    });
    let zh = s
        .alipay
        .send(post("/v1/bindings", body.clone(), "bind-wrong-zh"))
        .await;
    assert!((400..500).contains(&zh.status), "{}", zh.body);
    assert_eq!(zh.header("content-type"), Some("application/problem+json"));
    assert_eq!(zh.header("content-language"), Some("zh-CN"));
    let next = zh.body["next_step"].as_str().unwrap();
    assert!(
        next.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{next}"
    );
    let en = s
        .alipay
        .send(Req {
            lang: Some("en-US,en;q=0.9"),
            ..post("/v1/bindings", body, "bind-wrong-en")
        })
        .await;
    assert_eq!(en.status, zh.status);
    assert_eq!(en.body["type"], zh.body["type"]);
    assert_eq!(en.header("content-language"), Some("en"));
    assert!(en.body["next_step"].as_str().unwrap().is_ascii());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_stale_timestamp_replayed_nonce_and_unknown_platform_are_401() {
    let s = start().await;
    let ok = post("/v1/accounts", json!({"external_id": "x-1"}), "k-1");
    let tampered = s
        .alipay
        .send(Req {
            tamper_body: true,
            ..ok.clone()
        })
        .await;
    assert_eq!(tampered.status, 401);
    assert_eq!(
        tampered.body["type"],
        "urn:citycard:problem:unauthenticated"
    );
    let stale = s
        .alipay
        .send(Req {
            timestamp_offset_ms: -6 * 60 * 1000,
            ..ok.clone()
        })
        .await;
    assert_eq!(stale.status, 401);
    let early = s
        .alipay
        .send(Req {
            timestamp_offset_ms: 6 * 60 * 1000,
            ..ok.clone()
        })
        .await;
    assert_eq!(early.status, 401);
    // Within the window it is accepted, once per nonce.
    let first = s
        .alipay
        .send(Req {
            nonce: Some("same-nonce".into()),
            timestamp_offset_ms: -4 * 60 * 1000,
            ..ok.clone()
        })
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let replayed = s
        .alipay
        .send(Req {
            nonce: Some("same-nonce".into()),
            ..ok.clone()
        })
        .await;
    assert_eq!(replayed.status, 401);
    // Signed with Alipay's key but claiming to be an unregistered platform.
    let mut stranger = support::start().await.alipay;
    stranger.base = s.base.clone();
    stranger.signer.platform = "union_pay".into();
    stranger.card_system = s.card_system.clone();
    assert_eq!(stranger.send(ok.clone()).await.status, 401);
    // Another platform's key for Alipay's name.
    let mut impostor = support::start().await.alipay;
    impostor.base = s.base.clone();
    impostor.card_system = s.card_system.clone();
    assert_eq!(impostor.send(ok).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_sees_only_its_own_accounts_and_bindings() {
    let s = start().await;
    let (account, binding) = bound(&s).await;
    // WeChat Pay signs with RSA and is a registered platform.
    let own = s
        .wechat
        .send(post(
            "/v1/accounts",
            json!({"external_id": "wx-1"}),
            "wx-acct-1",
        ))
        .await;
    assert_eq!(own.status, 201, "{}", own.body);
    assert_eq!(own.body["platform"], "wechat_pay");
    for path in [
        format!("/v1/accounts/{account}"),
        format!("/v1/bindings/{binding}"),
        format!("/v1/bindings/{binding}/pass"),
        format!("/v1/bindings/{binding}/records"),
        format!("/v1/bindings?account={account}"),
    ] {
        let answer = s.wechat.send(get(path.clone())).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.body);
        assert_eq!(answer.body["type"], "urn:citycard:problem:denied");
    }
    let unbind = s
        .wechat
        .send(Req {
            method: "DELETE",
            path: format!("/v1/bindings/{binding}"),
            key: Some("wx-unbind".into()),
            ..Req::default()
        })
        .await;
    assert_eq!(unbind.status, 403);
    let order = s
        .wechat
        .send(post(
            "/v1/top-up-orders",
            json!({"binding": binding, "amount": "10.00"}),
            "wx-order",
        ))
        .await;
    assert_eq!(order.status, 403);
    // Alipay's binding is untouched.
    let pass = s
        .alipay
        .send(get(format!("/v1/bindings/{binding}/pass")))
        .await;
    assert_eq!(pass.body["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_missing_400_other_payload_422_in_flight_409_retry_replays() {
    let s = start().await;
    let missing = s
        .alipay
        .send(Req {
            key: None,
            ..post("/v1/accounts", json!({"external_id": "m-1"}), "-")
        })
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body["type"],
        "urn:citycard:problem:idempotency-key-missing"
    );

    let first = s
        .alipay
        .send(post("/v1/accounts", json!({"external_id": "r-1"}), "key-r"))
        .await;
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    let retry = s
        .alipay
        .send(post("/v1/accounts", json!({"external_id": "r-1"}), "key-r"))
        .await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let other = s
        .alipay
        .send(post("/v1/accounts", json!({"external_id": "r-2"}), "key-r"))
        .await;
    assert_eq!(other.status, 422);
    assert_eq!(
        other.body["type"],
        "urn:citycard:problem:idempotency-key-reused"
    );
    // A refusal is stored and replayed too (status and body).
    let (_, binding) = bound(&s).await;
    let over = post(
        "/v1/top-up-orders",
        json!({"binding": binding, "amount": "0.00"}),
        "zero",
    );
    let refused = s.alipay.send(over.clone()).await;
    assert_eq!(refused.status, 400);
    let again = s.alipay.send(over).await;
    assert_eq!((again.status, &again.body), (400, &refused.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // The same key while the first request is still being processed: its
    // claim is held (as by another instance that has not finished).
    let body = serde_json::to_vec(&json!({"external_id": "f-1"})).unwrap();
    let caller = citycard_api::auth::Caller {
        platform: citycard::core::Platform::Alipay,
        nonce: "-".into(),
        body_digest: citycard_api::signing::body_digest(&body),
    };
    let fingerprint = citycard::core::Fingerprint::of_bytes(
        format!("POST\n/v1/accounts\n{}", caller.body_digest).as_bytes(),
    );
    use citycard::core::Clock as _;
    s.city
        .idempotency_store()
        .claim(
            &citycard_api::idem::scope(&caller),
            &citycard::core::IdempotencyKey::parse("key-f").unwrap(),
            &fingerprint,
            s.clock.now(),
        )
        .await
        .unwrap();
    let in_flight = s
        .alipay
        .send(post("/v1/accounts", json!({"external_id": "f-1"}), "key-f"))
        .await;
    assert_eq!(in_flight.status, 409);
    assert_eq!(
        in_flight.body["type"],
        "urn:citycard:problem:idempotency-key-in-flight"
    );
    assert_eq!(in_flight.body["retryable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_by_class_to_status_and_type() {
    let s = start().await;
    let (_, binding) = bound(&s).await;
    let cases = [
        // Invalid input: an amount with three decimals.
        (
            post(
                "/v1/top-up-orders",
                json!({"binding": binding, "amount": "1.005"}),
                "e-1",
            ),
            400,
            "invalid-input",
        ),
        // Not found: a binding that does not exist.
        (get("/v1/bindings/bnd-doesnotexist/pass"), 404, "not-found"),
        // Not found: an order never created.
        (get("/v1/top-up-orders/never-created"), 404, "not-found"),
        // Invalid input: a body that is not the expected JSON.
        (
            post("/v1/accounts", json!({"nope": 1}), "e-2"),
            400,
            "invalid-input",
        ),
    ];
    for (req, status, kind) in cases {
        let path = req.path.clone();
        let answer = s.alipay.send(req).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert_eq!(
            answer.body["type"],
            format!("urn:citycard:problem:{kind}"),
            "{path}"
        );
        assert_eq!(answer.body["status"], status);
        assert!(!answer.body["next_step"].as_str().unwrap().is_empty());
    }
    // Conflict: a top-up over the wallet's cap, paid by the platform.
    let o = s
        .alipay
        .send(post(
            "/v1/top-up-orders",
            json!({"binding": binding, "amount": "2000.00"}),
            "big",
        ))
        .await;
    assert_eq!(o.status, 201);
    let paid = s
        .alipay
        .send(post(
            "/v1/top-up-orders/big/payment",
            json!({"trade_no": "T1", "amount": "2000.00", "status": "paid"}),
            "big-notify",
        ))
        .await;
    assert_eq!(paid.status, 409, "{}", paid.body);
    assert_eq!(paid.body["type"], "urn:citycard:problem:conflict");
    // Every class of the table has a distinct type and an error status.
    for class in citycard_api::problem::CLASSES {
        let (status, _) =
            citycard_api::problem::status_and_type(citycard_api::problem::Kind::Class(class));
        assert!(status.as_u16() >= 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route() {
    let s = start().await;
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("post", "/v1/accounts"),
        ("get", "/v1/accounts/{id}"),
        ("post", "/v1/accounts/{id}/real-name"),
        ("post", "/v1/bindings"),
        ("get", "/v1/bindings"),
        ("get", "/v1/bindings/{id}"),
        ("delete", "/v1/bindings/{id}"),
        ("get", "/v1/bindings/{id}/pass"),
        ("post", "/v1/bindings/{id}/pass/refresh"),
        ("get", "/v1/bindings/{id}/records"),
        ("post", "/v1/top-up-orders"),
        ("get", "/v1/top-up-orders/{id}"),
        ("post", "/v1/top-up-orders/{id}/payment"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        listed,
        expected.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"]["4XX"].is_object(),
            "{method} {path} has no problem response"
        );
    }
    // Every route the document lists answers (signed, so not 404/405).
    for (method, path) in expected {
        let path = path.replace("{id}", "x");
        let req = Req {
            method: match method {
                "get" => "GET",
                "post" => "POST",
                _ => "DELETE",
            },
            path,
            key: Some(format!("probe-{method}")),
            body: Some(json!({})),
            ..Req::default()
        };
        let answer = s.alipay.send(req.clone()).await;
        assert_ne!(answer.status, 405, "{} {}", req.method, req.path);
        assert_ne!(
            answer.body["type"],
            serde_json::Value::Null,
            "{} {}: {}",
            req.method,
            req.path,
            answer.body
        );
    }
    // Schemas of the responses are in the document.
    for schema in [
        "AccountView",
        "BindingView",
        "PassView",
        "RecordsPage",
        "TopUpOrder",
        "Problem",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}
