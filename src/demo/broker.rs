//! The demo's embedded MQTT broker (rumqttd), standing in for the county
//! platform when no real broker is named.

use std::net::SocketAddr;

/// Starts rumqttd on `listen` in its own threads; it runs until the process
/// exits. Returns the address it listens on (port 0 picks a free one).
pub fn start_embedded_broker(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    // Fail early and clearly if the port is taken.
    let listen = std::net::TcpListener::bind(listen)
        .and_then(|l| l.local_addr())
        .map_err(|e| anyhow::anyhow!("cannot listen for the demo's MQTT broker on {listen}: {e} (use --mqtt-listen or --broker)"))?;
    let text = format!(
        r#"
id = 0
[router]
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let cfg: rumqttd::Config = toml::from_str(&text)?;
    std::thread::Builder::new()
        .name("demo-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(cfg);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "demo MQTT broker stopped");
            }
        })?;
    // The uplink connects with retries, so it needs no readiness wait here.
    Ok(listen)
}
