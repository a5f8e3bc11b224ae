//! The `riskgate` command: run | validate | demo | ack | calibrate | history | user.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use riskgate::client;

#[derive(Parser)]
#[command(
    name = "riskgate",
    version,
    about = "Edge gateway for industrial-safety sites: polls devices, raises alarms, forwards them to the county platform"
)]
struct Cli {
    /// Log lines as text (default) or as JSON objects, one a line (for
    /// journald or a log shipper). The level is set with RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
        /// The password of the demo's `operator` and `viewer` logins
        /// [default: a new random one each start, printed in the banner].
        #[arg(long)]
        demo_password: Option<String>,
    },
    /// Acknowledge an alarm on the running gateway, as a logged-in operator.
    /// The password is read from the terminal, or from the first line of
    /// standard input; `RISKGATE_TOKEN` (a token from `POST /api/login`)
    /// instead logs in with that session.
    Ack {
        alarm_id: String,
        /// The operator account to log in with (its name is the one the
        /// acknowledgement carries).
        #[arg(long, visible_alias = "by")]
        user: Option<String>,
        /// The gateway's API; default: `http.listen` of --config, else 127.0.0.1:8080.
        #[arg(long)]
        api: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Open a calibration window (标校) on a point of the running gateway,
    /// as a logged-in operator (its name is the window's): the point's
    /// alarms go out as `calibration` events until the window ends by
    /// itself. Logs in like `ack`.
    Calibrate {
        point: String,
        /// How long, e.g. 30m (at most 4h).
        #[arg(long = "for")]
        length: String,
        /// The operator account to log in with.
        #[arg(long = "by", visible_alias = "user")]
        user: Option<String>,
        /// The gateway's API; default: `http.listen` of --config, else 127.0.0.1:8080.
        #[arg(long)]
        api: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a point's local history, or with --audit the audit log of
    /// acknowledgements.
    History {
        #[arg(required_unless_present = "audit")]
        point: Option<String>,
        #[arg(long, default_value = "1h")]
        since: String,
        #[arg(long, short)]
        config: PathBuf,
        /// Print the 5-minute statistics instead of raw readings.
        #[arg(long)]
        stats: bool,
        /// Print the audit log (who acknowledged which alarm, when, from where).
        #[arg(long, conflicts_with = "stats")]
        audit: bool,
    },
    /// Manage the operator accounts (the users file, `http.users_file`).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
        /// The config whose `http.users_file` to use [default: /etc/riskgate/users.toml].
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The users file itself (instead of --config's).
        #[arg(long, global = true)]
        users_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is read from the terminal or standard input.
    Add {
        name: String,
        #[arg(long, value_parser = ["viewer", "operator"])]
        role: String,
        /// The name shown on the page (default: the name).
        #[arg(long)]
        display: Option<String>,
    },
    /// Set a user's password (their open sessions end).
    Passwd { name: String },
    /// Remove a user (their open sessions end).
    Remove { name: String },
    /// List the users: name, role, display name.
    List,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn,rumqttc=warn"));
    // Logs on stderr: stdout is the demo's banner and the CLI's answers.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        // One JSON object a line, the event's fields flattened beside
        // `level`, `timestamp` and `message`, as log shippers expect.
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
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
    let log_format = cli.log_format;
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
            init_logs(log_format);
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
            demo_password,
        } => {
            init_logs(log_format);
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
            match rt.block_on(demo(opts, duration.map(Into::into), demo_password)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Ack {
            alarm_id,
            user,
            api,
            config,
        } => {
            let api = match api_of(api, config) {
                Ok(a) => a,
                Err(code) => return code,
            };
            let login = match login_of(user) {
                Ok(l) => l,
                Err(code) => return code,
            };
            print_outcome(client::ack(&api, &alarm_id, login))
        }
        Cmd::User {
            cmd,
            config,
            users_file,
        } => match user_cmd(cmd, config, users_file) {
            Ok(msg) => {
                print!("{msg}");
                if !msg.ends_with('\n') {
                    println!();
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Cmd::Calibrate {
            point,
            length,
            user,
            api,
            config,
        } => {
            let api = match api_of(api, config) {
                Ok(a) => a,
                Err(code) => return code,
            };
            let login = match login_of(user) {
                Ok(l) => l,
                Err(code) => return code,
            };
            print_outcome(client::calibrate(&api, &point, &length, login))
        }
        Cmd::History {
            point,
            since,
            config,
            stats,
            audit,
        } => {
            let cfg = match load_or_print(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let r = match point {
                _ if audit => audit_log(&cfg, &since),
                Some(point) => history(&cfg, &point, &since, stats),
                None => Err(anyhow::anyhow!("name a point, or give --audit")),
            };
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The API a client command talks to: `--api`, else `http.listen` of
/// `--config`, else the default listener.
fn api_of(api: Option<String>, config: Option<PathBuf>) -> Result<String, ExitCode> {
    match (api, config) {
        (Some(a), _) => Ok(a),
        (None, Some(c)) => match load_or_print(&c)?.http {
            Some(h) => Ok(format!("http://{}", h.listen)),
            None => {
                eprintln!(
                    "{}: [http] is disabled, so there is no API to send this to; give --api",
                    c.display()
                );
                Err(ExitCode::from(2))
            }
        },
        (None, None) => Ok("http://127.0.0.1:8080".into()),
    }
}

/// `RISKGATE_TOKEN`, else the operator account's password from the terminal.
fn login_of(user: Option<String>) -> Result<client::Login, ExitCode> {
    match client::Login::from_env_or_prompt(user) {
        Some(Ok(l)) => Ok(l),
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            Err(ExitCode::from(2))
        }
        None => {
            eprintln!(
                "error: give --user NAME (--by NAME for calibrate; an operator account) or set RISKGATE_TOKEN"
            );
            Err(ExitCode::from(2))
        }
    }
}

/// Runs one client request and prints its line or its error.
fn print_outcome(request: impl std::future::Future<Output = anyhow::Result<String>>) -> ExitCode {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(request) {
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

fn user_cmd(
    cmd: UserCmd,
    config: Option<PathBuf>,
    users_file: Option<PathBuf>,
) -> anyhow::Result<String> {
    use riskgate::auth::cli;
    let path = cli::users_file(users_file, config.as_deref())?;
    Ok(match cmd {
        UserCmd::Add {
            name,
            role,
            display,
        } => {
            let pw = cli::read_new_password()?;
            cli::add(&path, &name, role.parse()?, display.as_deref(), &pw)?
        }
        UserCmd::Passwd { name } => {
            let pw = cli::read_new_password()?;
            cli::passwd(&path, &name, &pw)?
        }
        UserCmd::Remove { name } => cli::remove(&path, &name)?,
        UserCmd::List => cli::list(&path)?,
    })
}

/// `riskgate history --audit`: the audit log, oldest first.
fn audit_log(cfg: &riskgate::config::Config, since: &str) -> anyhow::Result<()> {
    let from = riskgate::time::since(since, chrono::Utc::now())?;
    let store = riskgate::queue::Store::open(
        std::path::Path::new(&cfg.gateway.data_dir),
        u64::MAX,
        u64::MAX,
    )?;
    let tz = cfg.tz();
    println!("time\tsource\tactor\tdisplay_name\taddress\taction\talarm_id\tresult");
    for r in store.audit_log(from.timestamp_millis(), usize::MAX >> 1)? {
        let at = chrono::DateTime::from_timestamp_millis(r.at_ms)
            .map(|t| {
                t.with_timezone(&tz)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
            })
            .unwrap_or_default();
        println!(
            "{at}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.source.as_str(),
            r.actor,
            r.display_name,
            r.address,
            r.action,
            r.alarm_id,
            r.result
        );
    }
    Ok(())
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
async fn demo(
    opts: riskgate::demo::DemoOptions,
    duration: Option<Duration>,
    password: Option<String>,
) -> anyhow::Result<()> {
    let mut devs = riskgate::demo::start_devices().await?;
    let broker = match &opts.broker {
        Some(b) => b.clone(),
        None => riskgate::demo::start_embedded_broker(opts.mqtt_listen)?.to_string(),
    };
    riskgate::demo::start_video(&mut devs, &broker)?;
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let logins = riskgate::demo::write_demo_users(&opts.data_dir, password)?;
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
    // The two lines a browser test reads: `login: NAME / PASSWORD`.
    println!("  login: {} / {}", logins.operator.0, logins.operator.1);
    println!("  viewer: {} / {}", logins.viewer.0, logins.viewer.1);
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
