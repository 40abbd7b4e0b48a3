//! Connecting to NATS so that an outage pauses the relay instead of failing it: retry the first
//! connection, reconnect forever, with a capped backoff.

use crate::error::{Error, Result};
use std::time::Duration;

/// The longest pause between reconnection attempts.
const RECONNECT_CAP: Duration = Duration::from_secs(5);

/// Connection options for the relay and the stream consumer: the first connection is retried,
/// reconnection never gives up, and the pause between attempts grows from 50 ms to at most
/// 5 s. Add your own (credentials, TLS, name) to them.
pub fn connect_options() -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("disconnected from NATS; reconnecting")
                }
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
}

/// The pause before reconnection attempt `attempts`.
fn reconnect_delay(attempts: usize) -> Duration {
    let exp = u32::try_from(attempts.min(10)).unwrap_or(10);
    Duration::from_millis(50)
        .saturating_mul(1 << exp)
        .min(RECONNECT_CAP)
}

/// Connects to `url` with [`connect_options`].
///
/// # Errors
/// [`Error::Nats`] for an address that does not parse.
pub async fn connect(url: &str) -> Result<async_nats::Client> {
    connect_options().connect(url).await.map_err(Error::nats)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reconnect_delays_grow_to_the_cap() {
        let d: Vec<u64> = [0, 1, 2, 6, 50]
            .iter()
            .map(|a| super::reconnect_delay(*a).as_millis() as u64)
            .collect();
        assert_eq!(d, [50, 100, 200, 3200, 5000]);
    }
}
