//! A replica's routes alone (its catalog unreachable): health, reads, the token, and
//! each mode's own internal routes.

use common::wire::Replication;
use serde_json::json;

use crate::stack::{self, call, eventually, get, get_internal, post, TOKEN};

struct Replica {
    router: axum::Router,
    _app: order::App,
    _dir: tempfile::TempDir,
}

/// Replica 1 alone, in `mode`; nothing listens at its URL or its catalog's.
async fn replica(mode: Replication) -> Replica {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = stack::replica(dir.path(), mode, "http://127.0.0.1:9", "http://127.0.0.1:9").await;
    Replica {
        router: app.router(),
        _app: app,
        _dir: dir,
    }
}

#[tokio::test]
async fn health_reports_the_operational_contract() {
    for mode in [Replication::PrimaryBackup, Replication::Raft] {
        let r = replica(mode).await;
        let reply = call(&r.router, get("/health")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        for field in [
            "id",
            "role",
            "ready",
            "epoch",
            "last_order",
            "digest",
            "orders",
        ] {
            assert!(
                reply.json.get(field).is_some(),
                "{mode}: {field} missing: {}",
                reply.text
            );
        }
        assert_eq!(reply.json["id"], 1);
        assert_eq!(reply.json["mode"], mode.to_string());
        assert_eq!(reply.json["orders"], 0);
    }
}

#[tokio::test]
async fn order_numbers_that_are_not_numbers_are_400() {
    let r = replica(Replication::PrimaryBackup).await;
    for path in [
        "/orders/abc",
        "/orders/-1",
        "/orders/1.5",
        "/orders/99999999999999999999999",
    ] {
        call(&r.router, get(path)).await.assert_error(400, path);
    }
}

#[tokio::test]
async fn an_order_never_stored_is_404() {
    for mode in [Replication::PrimaryBackup, Replication::Raft] {
        let r = replica(mode).await;
        // Raft: the lone replica elects itself, then answers from its state machine.
        let reply = eventually(&format!("{mode}: order 0"), || async {
            let reply = call(&r.router, get("/orders/0")).await;
            if reply.status == 404 {
                Ok(reply)
            } else {
                Err(reply.text)
            }
        })
        .await;
        reply.assert_error(404, "order 0");
    }
}

#[tokio::test]
async fn internal_routes_refuse_a_missing_or_wrong_token() {
    for mode in [Replication::PrimaryBackup, Replication::Raft] {
        let r = replica(mode).await;
        let own: [(&str, serde_json::Value); 2] = match mode {
            Replication::PrimaryBackup => [
                ("/internal/leader", json!({"leader_id": 1, "epoch": 99})),
                (
                    "/internal/replicate",
                    json!({"leader_id": 2, "epoch": 99, "prev": null, "entries": []}),
                ),
            ],
            Replication::Raft => [
                ("/internal/raft/vote", json!({})),
                ("/internal/raft/append", json!({})),
            ],
        };
        let place = ("/orders", json!({"name": "Tux", "quantity": 5, "key": "k"}));
        for (path, body) in own.into_iter().chain([place]) {
            for token in [None, Some("wrong-token")] {
                call(&r.router, post(path, body.to_string(), token))
                    .await
                    .assert_error(401, &format!("{mode} {path} with {token:?}"));
            }
        }
        call(&r.router, get("/internal/log?from=0"))
            .await
            .assert_error(401, "log page without a token");
        let health = call(&r.router, get("/health")).await;
        assert_eq!(health.json["orders"], 0, "{}", health.text);
        if mode == Replication::PrimaryBackup {
            assert_eq!(health.json["epoch"], 0, "{}", health.text);
        }
    }
}

#[tokio::test]
async fn a_malformed_log_page_query_is_400() {
    let r = replica(Replication::PrimaryBackup).await;
    call(&r.router, get_internal("/internal/log?from=minus-one"))
        .await
        .assert_error(400, "from=minus-one");
}

#[tokio::test]
async fn each_mode_serves_only_its_own_internal_routes() {
    let pb = replica(Replication::PrimaryBackup).await;
    let reply = call(&pb.router, post("/internal/raft/vote", "{}", Some(TOKEN))).await;
    reply.assert_error(404, "raft route in primary-backup mode");
    let raft = replica(Replication::Raft).await;
    for path in ["/internal/leader", "/internal/replicate"] {
        let reply = call(&raft.router, post(path, "{}", Some(TOKEN))).await;
        reply.assert_error(404, &format!("{path} in raft mode"));
    }
}

#[tokio::test]
async fn an_unreadable_or_unknown_raft_message_is_400() {
    let r = replica(Replication::Raft).await;
    call(&r.router, post("/internal/raft/vote", "", Some(TOKEN)))
        .await
        .assert_error(400, "unreadable vote");
    call(&r.router, post("/internal/raft/gossip", "", Some(TOKEN)))
        .await
        .assert_error(400, "unknown kind");
}

#[tokio::test]
async fn a_leader_notice_naming_an_unknown_replica_is_400_and_changes_nothing() {
    let r = replica(Replication::PrimaryBackup).await;
    let notice = json!({"leader_id": 9, "epoch": 5});
    call(
        &r.router,
        post("/internal/leader", notice.to_string(), Some(TOKEN)),
    )
    .await
    .assert_error(400, "leader 9");
    let health = call(&r.router, get("/health")).await;
    assert_eq!(health.json["epoch"], 0, "{}", health.text);
}

#[tokio::test]
async fn an_order_without_a_leader_role_is_421() {
    let r = replica(Replication::PrimaryBackup).await;
    let order = json!({"name": "Tux", "quantity": 1, "key": "k"});
    call(&r.router, post("/orders", order.to_string(), Some(TOKEN)))
        .await
        .assert_error(421, "order on a follower");
}

#[tokio::test]
async fn an_order_or_batch_with_an_empty_or_oversized_name_or_key_is_400() {
    let r = replica(Replication::PrimaryBackup).await;
    let long = "x".repeat(common::domain::MAX_TEXT + 1);
    for (name, key) in [
        ("", "k"),
        ("Tux", ""),
        (long.as_str(), "k"),
        ("Tux", long.as_str()),
    ] {
        let order = json!({"name": name, "quantity": 1, "key": key});
        call(&r.router, post("/orders", order.to_string(), Some(TOKEN)))
            .await
            .assert_error(400, &format!("order {name:.8}/{key:.8}"));
        let batch = json!({"leader_id": 2, "epoch": 1, "prev": null, "entries": [
            {"number": 0, "name": name, "quantity": 1, "key": key, "epoch": 1}
        ]});
        call(
            &r.router,
            post("/internal/replicate", batch.to_string(), Some(TOKEN)),
        )
        .await
        .assert_error(400, &format!("batch {name:.8}/{key:.8}"));
    }
    let health = call(&r.router, get("/health")).await;
    assert_eq!(health.json["orders"], 0, "{}", health.text);
}
