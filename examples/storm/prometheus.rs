//! `/metrics` while storm runs: every layer's counters, gauges and histograms in the
//! Prometheus text format, from `metrics-exporter-prometheus`, on a free loopback port.
//!
//! The recorder is installed after the layers were built: palisade's metric cells register
//! with a recorder at their first update after it appears, so nothing is lost.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusBuilder;
use palisade::BoxError;

/// Installs a Prometheus recorder as the global one and serves its scrape at `/metrics` on
/// 127.0.0.1 (a port the OS picks). Returns the address.
pub(crate) async fn serve() -> Result<SocketAddr, BoxError> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("installing the metrics recorder: {e}"))?;
    // Histograms are drained into their summaries by the upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
