//! A runner that completes a queued call after its lease ran out (the call was handed out again) gets a
//! 4xx, which a hybrid runner does not retry (a 5xx would be retried forever, holding up every report
//! behind it), and the record is left to the current holder.

use std::sync::Arc;
use std::time::Duration;

use api_node::datastore::Datastore;
use api_node::direct::{AsyncPolicy, DirectDataAccess};
use api_node::queue::MemoryQueue;
use api_node::testing::{fresh_store, Backend};
use runner_node::DataAccess;
use serde_json::json;
use shared::time::DateTime;
use shared::{App, Call, CallStatus, QueuedCall};

#[tokio::test]
async fn a_completion_after_the_lease_ran_out_is_refused_with_a_4xx() {
    let (store, _) = fresh_store(Backend::Sqlite).await;
    let store: Arc<dyn Datastore> = Arc::new(store);
    let app =
        store.insert_app(&App::new(serde_json::from_value(json!({"name": "a"})).unwrap()).unwrap()).await.unwrap();
    let policy = AsyncPolicy { lease: Duration::from_millis(100), max_attempts: 3, backoff: Duration::ZERO };
    let data = DirectDataAccess::new(store.clone(), Arc::new(MemoryQueue::default()), policy);
    let call = Call {
        id: shared::id::new_id(),
        status: CallStatus::Queued,
        app_id: app.id.clone(),
        fn_id: String::new(),
        path: "/gone".into(),
        created_at: DateTime::now(),
        started_at: None,
        completed_at: None,
        error: String::new(),
        stats: Vec::new(),
        attempts: Vec::new(),
        dead_letter: false,
    };
    let queued = QueuedCall {
        call: call.clone(),
        method: "POST".into(),
        url: "http://x/".into(),
        headers: Default::default(),
        body: String::new(),
        priority: 0,
    };
    data.enqueue(&queued).await.unwrap();
    let stale = data.dequeue(Duration::ZERO).await.unwrap().expect("first delivery");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let current = data.dequeue(Duration::ZERO).await.unwrap().expect("redelivered after the lease");
    assert_eq!(current.attempt, 2);

    let done = Call { status: CallStatus::Success, completed_at: Some(DateTime::now()), ..call.clone() };
    let refused = data.complete(&stale, &done).await.expect_err("a stale completion is refused");
    assert_eq!(refused.status(), 400, "{refused:?}");
    let record = store.get_call(&call.id).await.unwrap();
    assert!(record.attempts.is_empty(), "the stale holder does not write the record: {record:?}");

    data.complete(&current, &done).await.unwrap();
    let record = store.get_call(&call.id).await.unwrap();
    assert_eq!(record.status, CallStatus::Success);
    assert_eq!(record.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![2]);
    assert!(data.dequeue(Duration::ZERO).await.unwrap().is_none(), "acked");
}
