//! The `riskgate` command: run | validate | demo | ack | history.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "riskgate",
    version,
    about = "Edge gateway for industrial-safety sites: polls devices, raises alarms, forwards them to the county platform"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file; exit 0 when valid, 2 with every error otherwise.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a simulated coal-mine site: devices, gateway, MQTT broker, operator page.
    // Only in builds with the `demo` feature (the default): a production
    // build links no simulator and no embedded broker.
    #[cfg(feature = "demo")]
    Demo {
        /// An external MQTT broker (HOST:PORT) for the uplink instead of the embedded one.
        #[arg(long)]
        broker: Option<String>,
        /// Where the embedded broker listens [default: 127.0.0.1:1883, or a
        /// free port if that one is taken].
        #[arg(long)]
        mqtt_listen: Option<std::net::SocketAddr>,
        /// An InfluxDB v2-compatible server, e.g. http://127.0.0.1:8086.
        #[arg(long)]
        influx_url: Option<String>,
        #[arg(long, default_value = "riskgate")]
        influx_org: String,
        #[arg(long, default_value = "riskgate")]
        influx_bucket: String,
        /// The operator page and API [default: 127.0.0.1:8080, or a free port
        /// if that one is taken].
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        #[arg(long, default_value = "riskgate-demo-data")]
        data_dir: PathBuf,
        /// Stop after this long (e.g. 90s); default: until Ctrl-C.
        #[arg(long)]
        duration: Option<humantime::Duration>,
    },
    /// Acknowledge an alarm on the running gateway.
    Ack {
        alarm_id: String,
        #[arg(long)]
        by: String,
        /// The gateway's API; default: `http.listen` of --config, else 127.0.0.1:8080.
        #[arg(long)]
        api: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a point's local history.
    History {
        point: String,
        #[arg(long, default_value = "1h")]
        since: String,
        #[arg(long, short)]
        config: PathBuf,
        /// Print the 5-minute statistics instead of raw readings.
        #[arg(long)]
        stats: bool,
    },
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn,rumqttc=warn"));
    // Logs on stderr: stdout is the demo's banner and the CLI's answers.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

fn load_or_print(path: &std::path::Path) -> Result<riskgate::config::Config, ExitCode> {
    match riskgate::config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            Ok(c)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) in {}", errors.len(), path.display());
            Err(ExitCode::from(2))
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Validate { config } => match load_or_print(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} devices, {} points, {} rules)",
                    config.display(),
                    c.devices.len(),
                    c.devices.iter().map(|d| d.points().len()).sum::<usize>(),
                    c.rules.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Cmd::Run { config } => {
            init_logs();
            let cfg = match load_or_print(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            match rt.block_on(riskgate::runtime::run(cfg, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "demo")]
        Cmd::Demo {
            broker,
            mqtt_listen,
            influx_url,
            influx_org,
            influx_bucket,
            http,
            data_dir,
            duration,
        } => {
            init_logs();
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            let opts = riskgate::demo::DemoOptions {
                broker,
                mqtt_listen: mqtt_listen
                    .unwrap_or_else(|| riskgate::demo::default_or_free("127.0.0.1:1883")),
                influx_url,
                influx_org,
                influx_bucket,
                http: http.unwrap_or_else(|| riskgate::demo::default_or_free("127.0.0.1:8080")),
                data_dir,
            };
            match rt.block_on(demo(opts, duration.map(Into::into))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Ack {
            alarm_id,
            by,
            api,
            config,
        } => {
            let api = match (api, config) {
                (Some(a), _) => a,
                (None, Some(c)) => match load_or_print(&c) {
                    Ok(cfg) => match cfg.http {
                        Some(h) => format!("http://{}", h.listen),
                        None => {
                            eprintln!(
                                "{}: [http] is disabled, so there is no API to send the acknowledgement to; give --api",
                                c.display()
                            );
                            return ExitCode::from(2);
                        }
                    },
                    Err(code) => return code,
                },
                (None, None) => "http://127.0.0.1:8080".into(),
            };
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            match rt.block_on(ack(&api, &alarm_id, &by)) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::History {
            point,
            since,
            config,
            stats,
        } => {
            let cfg = match load_or_print(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match history(&cfg, &point, &since, stats) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn ack(api: &str, alarm_id: &str, by: &str) -> anyhow::Result<String> {
    // `--api 127.0.0.1:8080` (as `http.listen` is written) means http://.
    let api = api.trim_end_matches('/');
    let url = if api.contains("://") {
        format!("{api}/api/alarms/ack")
    } else {
        format!("http://{api}/api/alarms/ack")
    };
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"alarm_id": alarm_id, "by": by}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status.is_success() {
        Ok(format!("acknowledged {alarm_id} by {by}"))
    } else {
        anyhow::bail!("{}", body["error"].as_str().unwrap_or(status.as_str()))
    }
}

fn history(
    cfg: &riskgate::config::Config,
    point: &str,
    since: &str,
    stats: bool,
) -> anyhow::Result<()> {
    if cfg.point(point).is_none() {
        anyhow::bail!("no point `{point}` in {}", cfg.file.display());
    }
    let from = riskgate::time::since(since, chrono::Utc::now())?;
    let store = riskgate::queue::Store::open(
        std::path::Path::new(&cfg.gateway.data_dir),
        u64::MAX,
        u64::MAX,
    )?;
    let tz = cfg.tz();
    let fmt = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| {
                t.with_timezone(&tz)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
            })
            .unwrap_or_default()
    };
    if stats {
        println!("start\tmin\tmax\tmean\tcount");
        for s in store.stats_5m(point, from)? {
            let (b, mn, mx, mean, n) = (s.start_ms, s.min, s.max, s.mean, s.count);
            println!("{}\t{mn}\t{mx}\t{mean:.3}\t{n}", fmt(b));
        }
    } else {
        println!("time\tvalue\tquality");
        for h in store.history(point, from, 1_000_000)? {
            let v = h.value.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "{}\t{v}\t{}",
                fmt(h.at_ms),
                if h.quality == 0 { "good" } else { "bad" }
            );
        }
    }
    Ok(())
}

#[cfg(feature = "demo")]
async fn demo(opts: riskgate::demo::DemoOptions, duration: Option<Duration>) -> anyhow::Result<()> {
    let mut devs = riskgate::demo::start_devices().await?;
    let broker = match &opts.broker {
        Some(b) => b.clone(),
        None => riskgate::demo::start_embedded_broker(opts.mqtt_listen)?.to_string(),
    };
    riskgate::demo::start_video(&mut devs, &broker)?;
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let text = riskgate::demo::config_toml(&opts, &devs, &broker);
    let path = opts.data_dir.join("demo-site.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let cfg = riskgate::config::load_str(&text, &path).map_err(|errs| {
        anyhow::anyhow!(
            "the demo config is invalid: {}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let prefix = cfg
        .uplink
        .as_ref()
        .map(|u| u.topic_prefix.clone())
        .unwrap_or_default();
    let site = cfg.site.id.clone();
    let running = riskgate::runtime::start(cfg).await?;
    println!("riskgate demo: a simulated coal mine ({site})");
    println!(
        "  operator page   http://{}/",
        running.http_addr.map(|a| a.to_string()).unwrap_or_default()
    );
    println!(
        "  MQTT broker     {broker}{}",
        if opts.broker.is_none() {
            " (embedded, stands in for the county platform)"
        } else {
            ""
        }
    );
    println!("  alarm topic     {prefix}/{site}/alarm");
    println!("  status topic    {prefix}/{site}/status (retained)");
    println!(
        "  watch with      mosquitto_sub -h {} -p {} -t '{prefix}/#' -v",
        broker.rsplit_once(':').map(|x| x.0).unwrap_or("127.0.0.1"),
        broker.rsplit_once(':').map(|x| x.1).unwrap_or("1883")
    );
    if let Some(u) = &opts.influx_url {
        println!(
            "  readings        {u} (org {}, bucket {})",
            opts.influx_org, opts.influx_bucket
        );
    }
    println!("  config          {}", path.display());
    println!(
        "  scenario        1301 face methane rises past 1.0 % and 1.5 % at ~10-16 s, clears at ~30 s, every 60 s"
    );
    match duration {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shutdown_signal() => {}
            }
        }
        None => shutdown_signal().await,
    }
    running.stop().await;
    drop(devs);
    Ok(())
}
