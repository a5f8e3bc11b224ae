//! `firmware-sim`: run simulated field devices from the command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use firmware_sim::devices::plant::Plant;
use firmware_sim::devices::{self, DeviceHandle, DeviceKind, RunnerOptions};
use firmware_sim::scenario::FaultKind;
use firmware_sim::{
    Fault, FaultSwitch, Pace, RegisterBank, RtuLine, Scenario, TcpSlave, VideoBox, VideoBoxConfig,
};

#[derive(Parser, Debug)]
#[command(
    name = "firmware-sim",
    version,
    about = "Simulated field devices (Modbus TCP/RTU, MQTT) for riskgate"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Multi-gas detector (CH4/CO/O2/temp) on Modbus TCP or RTU
    GasDetector(DeviceArgs),
    /// Reservoir telemetry terminal (rainfall, level, seepage, battery) on Modbus TCP or RTU
    #[command(alias = "reservoir-rtu")]
    Reservoir(DeviceArgs),
    /// Mine KJ monitoring system zone states on Modbus TCP (or RTU)
    KjMonitor {
        #[command(flatten)]
        dev: DeviceArgs,
        /// Number of zones (numbered from 1)
        #[arg(long, default_value_t = 4)]
        zones: u8,
    },
    /// Test bank with known values in every type and byte order
    TypedBank(TransportArgs),
    /// Medium-frequency furnace cooling skid (flows, temperatures, power that follows a cut command)
    FurnaceSkid(DeviceArgs),
    /// Aluminium DC-casting pit (cooling water, quick shut-off valve, drain, launder break with read-back)
    CastingPit(DeviceArgs),
    /// Gas user's alarm cabinet (% LEL) with its emergency shut-off valve (write coil, read-back)
    GasCabinet(DeviceArgs),
    /// Several RTU slaves on one serial line
    RtuLine(RtuLineArgs),
    /// AI video box publishing camera status over MQTT
    VideoBox(VideoArgs),
    /// SL 651-2014 telemetry station reporting to a centre over TCP, UDP or a serial device
    Sl651Station(Sl651Args),
}

#[derive(Args, Debug)]
struct Sl651Args {
    /// tcp://host:port, udp://host:port or serial:/dev/pts/N
    #[arg(long)]
    connect: String,
    /// Station address, 10 hex digits
    #[arg(long, default_value = "0000001001")]
    station: String,
    /// Password, 4 hex digits
    #[arg(long, default_value = "1234")]
    password: String,
    /// Station category: 50 rainfall, 48 river, 4B reservoir (hex)
    #[arg(long, default_value = "50")]
    category: String,
    /// Scenario file (signals rain_total, level, voltage, door, mains_lost, battery_low)
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Scenario time to replay, e.g. 6h
    #[arg(long, value_parser = parse_duration, default_value = "6h")]
    duration: Duration,
    /// Real time between two reports, e.g. 100ms
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    pace: Duration,
    /// Level element: 39 (Z, river) or 3B (ZU, reservoir)
    #[arg(long, default_value = "3B")]
    level_element: String,
    /// The cumulative rain counter restarts at this scenario time
    #[arg(long, value_parser = parse_duration)]
    counter_reset_at: Option<Duration>,
    /// none, bad_crc, wrong_password, truncated, out_of_order, retransmit
    #[arg(long, default_value = "none")]
    fault: String,
    /// Apply the fault to every Nth report
    #[arg(long, default_value_t = 5)]
    fault_every: usize,
    /// Fall silent after this many reports
    #[arg(long)]
    silent_after: Option<usize>,
    /// Send ASCII frames (SOH) instead of HEX/BCD (7E7E)
    #[arg(long)]
    ascii: bool,
    /// Centre address the frames name (1-255)
    #[arg(long, default_value_t = 1)]
    centre: u8,
}

async fn run_sl651_station(a: Sl651Args) -> Result<()> {
    use firmware_sim::sl651::{Identity, cli};
    let hex8 = |s: &str, what: &str| u8::from_str_radix(s, 16).with_context(|| format!("--{what}"));
    let mut address = [0u8; 5];
    if a.station.len() != 10 {
        bail!("--station: 10 hex digits");
    }
    for (i, b) in address.iter_mut().enumerate() {
        *b = hex8(&a.station[2 * i..2 * i + 2], "station")?;
    }
    let scenario = match &a.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::empty(),
    };
    cli::run(cli::Options {
        connect: a.connect,
        identity: Identity {
            centre: a.centre,
            address,
            password: u16::from_str_radix(&a.password, 16).context("--password")?,
            category: hex8(&a.category, "category")?,
        },
        scenario,
        start: None,
        duration: a.duration,
        pace: a.pace,
        level_element: hex8(&a.level_element, "level-element")?,
        counter_reset_at: a.counter_reset_at,
        fault: a.fault.parse().map_err(anyhow::Error::msg)?,
        fault_every: a.fault_every,
        silent_after: a.silent_after,
        ascii: a.ascii,
    })
    .await
}

#[derive(Args, Debug)]
struct TransportArgs {
    /// Modbus TCP listen address, e.g. 127.0.0.1:5020 (port 0 = any free port)
    #[arg(long, required_unless_present = "serial", conflicts_with = "serial")]
    listen: Option<SocketAddr>,
    /// Serial device for Modbus RTU, e.g. /dev/pts/3
    #[arg(long)]
    serial: Option<String>,
    /// Serial baud rate
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// RTU: answer at the pace of a real line at --baud (11 bits a byte,
    /// 3.5 characters between frames) instead of at once
    #[arg(long)]
    paced: bool,
    /// Unit id (TCP: default any unit id; RTU: default 1)
    #[arg(long)]
    unit: Option<u8>,
    /// Initial fault: none, silent, delay=2s, corrupt_crc, wrong_transaction_id, exception=2, drop_connection
    #[arg(long)]
    fault: Option<String>,
}

#[derive(Args, Debug)]
struct DeviceArgs {
    #[command(flatten)]
    transport: TransportArgs,
    /// Scenario file (TOML); without it every signal keeps its default value
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Runner tick, e.g. 200ms (default: the scenario's `tick`, else 200ms)
    #[arg(long, value_parser = parse_duration)]
    tick: Option<Duration>,
}

#[derive(Args, Debug)]
struct RtuLineArgs {
    /// Serial device, e.g. /dev/pts/3
    #[arg(long)]
    serial: String,
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Answer at the pace of a real line at --baud (11 bits a byte, 3.5
    /// characters between frames) instead of at once
    #[arg(long)]
    paced: bool,
    /// UNIT:KIND:SCENARIO[:FAULT], e.g. 3:gas-detector:scenarios/steady.toml:silent
    /// (SCENARIO `-` = none; FAULT as for --fault)
    #[arg(long = "slave", required = true)]
    slaves: Vec<String>,
    #[arg(long, value_parser = parse_duration)]
    tick: Option<Duration>,
}

#[derive(Args, Debug)]
struct VideoArgs {
    /// MQTT broker HOST:PORT
    #[arg(long)]
    broker: String,
    #[arg(long, default_value = "vb-1301")]
    box_id: String,
    #[arg(long, default_value_t = 3)]
    cameras: usize,
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Topic (default site/video/{box_id}/status)
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Start quiet (publish nothing)
    #[arg(long)]
    quiet: bool,
    /// Start publishing malformed payloads
    #[arg(long)]
    malformed: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parse `silent`, `delay=2s`, `exception=2`, ... into a [`Fault`].
fn parse_fault(spec: &str) -> Result<Fault> {
    let (kind, param) = match spec.split_once('=') {
        Some((k, p)) => (k, Some(p)),
        None => (spec, None),
    };
    let delay = match (kind.trim(), param) {
        ("delay", Some(p)) => {
            Some(humantime::parse_duration(p).with_context(|| format!("bad delay in {spec:?}"))?)
        }
        _ => None,
    };
    let code = match (kind.trim(), param) {
        ("exception", Some(p)) => Some(
            p.parse::<u8>()
                .with_context(|| format!("bad exception code in {spec:?}"))?,
        ),
        _ => None,
    };
    let fk = FaultKind::parse(kind, delay, code, None).map_err(anyhow::Error::msg)?;
    fk.as_fault().with_context(|| {
        format!("{spec:?} is not a Modbus fault (use a scenario fault timeline for reboot)")
    })
}

fn load_scenario(path: Option<&PathBuf>) -> Result<Scenario> {
    match path {
        None => Ok(Scenario::default()),
        Some(p) if p.as_os_str() == "-" => Ok(Scenario::default()),
        Some(p) => Ok(Scenario::load(p)?),
    }
}

fn ready(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this
/// is called, not when it is first awaited: callers call it before they
/// announce readiness, so that a supervisor (or a test) stopping the process
/// right after the `listening on` line gets a clean exit, not a kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

enum Transport {
    Tcp(TcpSlave),
    Rtu(RtuLine),
}

impl Transport {
    async fn stop(&mut self) {
        match self {
            Transport::Tcp(s) => s.stop().await,
            Transport::Rtu(l) => l.stop().await,
        }
    }
}

async fn start_transport(
    t: &TransportArgs,
    bank: RegisterBank,
    faults: FaultSwitch,
) -> Result<Transport> {
    if let Some(f) = &t.fault {
        faults.set(parse_fault(f)?);
    }
    if let Some(addr) = t.listen {
        let units = t.unit.map(|u| vec![u]).unwrap_or_default();
        let slave = TcpSlave::start(addr, units, bank, faults)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        ready(&format!("listening on {}", slave.local_addr()));
        Ok(Transport::Tcp(slave))
    } else if let Some(path) = &t.serial {
        let unit = t.unit.unwrap_or(1);
        let line = RtuLine::start_paced(path, t.baud, pace(t.paced), vec![(unit, bank, faults)])
            .await
            .with_context(|| format!("cannot open serial device {path}"))?;
        ready(&format!("listening on {path}"));
        Ok(Transport::Rtu(line))
    } else {
        bail!("give --listen ADDR or --serial PATH")
    }
}

async fn run_device(kind: DeviceKind, dev: DeviceArgs) -> Result<()> {
    let scenario = load_scenario(dev.scenario.as_ref())?;
    let bank = RegisterBank::new();
    let faults = FaultSwitch::new();
    let mut handle: DeviceHandle = devices::spawn_device_with(
        kind,
        scenario,
        bank.clone(),
        faults.clone(),
        RunnerOptions { tick: dev.tick },
    );
    tracing::info!(%kind, "device runner started");
    let stop = shutdown_signal();
    let mut transport = start_transport(&dev.transport, bank, faults).await?;
    stop.await;
    transport.stop().await;
    handle.stop().await;
    Ok(())
}

async fn run_typed_bank(t: TransportArgs) -> Result<()> {
    let bank = RegisterBank::new();
    DeviceKind::TypedBank.init_bank(&bank);
    let stop = shutdown_signal();
    let mut transport = start_transport(&t, bank, FaultSwitch::new()).await?;
    stop.await;
    transport.stop().await;
    Ok(())
}

fn pace(paced: bool) -> Pace {
    if paced { Pace::Wire } else { Pace::Instant }
}

async fn run_rtu_line(args: RtuLineArgs) -> Result<()> {
    let mut handles = Vec::new();
    let mut slaves = Vec::new();
    for spec in &args.slaves {
        let parts: Vec<&str> = spec.splitn(4, ':').collect();
        if parts.len() < 2 {
            bail!("--slave {spec:?}: expected UNIT:KIND:SCENARIO[:FAULT]");
        }
        let unit: u8 = parts[0]
            .parse()
            .with_context(|| format!("--slave {spec:?}: bad unit id {:?}", parts[0]))?;
        if unit == 0 || unit > 247 {
            bail!("--slave {spec:?}: unit id must be 1..=247");
        }
        let kind: DeviceKind = parts[1]
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--slave {spec:?}: {e}"))?;
        let scenario = match parts.get(2) {
            Some(p) if !p.is_empty() && *p != "-" => {
                Scenario::load(p).with_context(|| format!("--slave {spec:?}"))?
            }
            _ => Scenario::default(),
        };
        let faults = FaultSwitch::new();
        if let Some(f) = parts.get(3) {
            faults.set(parse_fault(f).with_context(|| format!("--slave {spec:?}"))?);
        }
        let bank = RegisterBank::new();
        let h = devices::spawn_device_with(
            kind,
            scenario,
            bank.clone(),
            faults.clone(),
            RunnerOptions { tick: args.tick },
        );
        tracing::info!(unit, %kind, fault = ?faults.get(), "rtu slave configured");
        handles.push(h);
        slaves.push((unit, bank, faults));
    }
    let mut line = RtuLine::start_paced(&args.serial, args.baud, pace(args.paced), slaves)
        .await
        .with_context(|| format!("cannot open serial device {}", args.serial))?;
    let stop = shutdown_signal();
    ready(&format!("listening on {}", args.serial));
    stop.await;
    line.stop().await;
    for mut h in handles {
        h.stop().await;
    }
    Ok(())
}

async fn run_video_box(args: VideoArgs) -> Result<()> {
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .with_context(|| format!("--broker {:?}: expected HOST:PORT", args.broker))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--broker {:?}: bad port", args.broker))?;
    let mut cfg = VideoBoxConfig::new(
        host.trim_matches(['[', ']']),
        port,
        args.box_id.clone(),
        args.cameras,
    );
    cfg.topic = args.topic.clone();
    cfg.heartbeat = args.heartbeat;
    cfg.scenario = load_scenario(args.scenario.as_ref())?;
    let topic = cfg.topic();
    let mut vb = VideoBox::start(cfg);
    vb.set_quiet(args.quiet);
    vb.set_malformed(args.malformed);
    let stop = shutdown_signal();
    ready(&format!("publishing to {} topic {topic}", args.broker));
    stop.await;
    vb.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::GasDetector(dev) => run_device(DeviceKind::GasDetector, dev).await,
        Cmd::Reservoir(dev) => run_device(DeviceKind::ReservoirRtu, dev).await,
        Cmd::KjMonitor { dev, zones } => run_device(DeviceKind::KjMonitor { zones }, dev).await,
        Cmd::TypedBank(t) => run_typed_bank(t).await,
        Cmd::FurnaceSkid(dev) => run_device(DeviceKind::Plant(Plant::FurnaceSkid), dev).await,
        Cmd::CastingPit(dev) => run_device(DeviceKind::Plant(Plant::CastingPit), dev).await,
        Cmd::GasCabinet(dev) => run_device(DeviceKind::Plant(Plant::GasCabinet), dev).await,
        Cmd::RtuLine(args) => run_rtu_line(args).await,
        Cmd::VideoBox(args) => run_video_box(args).await,
        Cmd::Sl651Station(args) => run_sl651_station(args).await,
    };
    if let Err(e) = res {
        eprintln!("firmware-sim: error: {e:#}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs() {
        assert_eq!(parse_fault("silent").unwrap(), Fault::Silent);
        assert_eq!(
            parse_fault("delay=1500ms").unwrap(),
            Fault::Delay(Duration::from_millis(1500))
        );
        assert_eq!(parse_fault("exception=4").unwrap(), Fault::Exception(4));
        assert_eq!(parse_fault("corrupt-crc").unwrap(), Fault::CorruptCrc);
        assert!(parse_fault("delay").is_err());
        assert!(parse_fault("reboot").is_err());
        assert!(parse_fault("melt").is_err());
    }

    #[test]
    fn cli_parses() {
        Cli::try_parse_from([
            "firmware-sim",
            "gas-detector",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            "x.toml",
        ])
        .unwrap();
        assert!(
            Cli::try_parse_from([
                "firmware-sim",
                "gas-detector",
                "--listen",
                "127.0.0.1:0",
                "--serial",
                "/dev/null"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["firmware-sim", "gas-detector"]).is_err());
        Cli::try_parse_from([
            "firmware-sim",
            "kj-monitor",
            "--listen",
            "127.0.0.1:0",
            "--zones",
            "6",
        ])
        .unwrap();
        Cli::try_parse_from([
            "firmware-sim",
            "rtu-line",
            "--serial",
            "/dev/pts/9",
            "--slave",
            "1:gas-detector:-",
            "--slave",
            "3:gas-detector:s.toml:silent",
        ])
        .unwrap();
        Cli::try_parse_from([
            "firmware-sim",
            "video-box",
            "--broker",
            "127.0.0.1:1883",
            "--heartbeat",
            "1s",
        ])
        .unwrap();
    }
}
