//! Driving the dispatcher's reconciler from a test: passes until it acts on a job, without
//! sleeping longer than a pass needs.

use std::time::{Duration, Instant};

use framefleet_core::video::VideoId;
use framefleet_dispatcher::reconcile::{Action, ReconcileReport};
use framefleet_dispatcher::Dispatcher;

/// Runs reconciler passes until one acts on `id`; returns what it did. Panics after a minute.
pub async fn reconcile_until_acted(dispatcher: &Dispatcher, id: &VideoId) -> Action {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ReconcileReport { actions, .. } = dispatcher.reconcile_once().await.unwrap();
        if let Some((_, action)) = actions.into_iter().find(|(v, _)| v == id) {
            return action;
        }
        assert!(
            Instant::now() < deadline,
            "the reconciler never acted on {id}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
