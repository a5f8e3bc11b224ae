//! The riskgate binary as the tests run it, and the in-process gateway's
//! logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

/// The riskgate binary as a child process (`riskgate run`), killed
/// (SIGKILL) when dropped.
pub struct Riskgate {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Riskgate {
    /// `riskgate run --config FILE`, its stdout and stderr (the logs) appended
    /// to `log`.
    pub fn spawn(config: &Path, log: &Path, envs: &[(&str, &str)]) -> Riskgate {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskgate"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Riskgate {
            child: Some(cmd.spawn().unwrap()),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no clean stop, no drain, no offline status.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(st.success());
            let status = c.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "riskgate died of SIGKILL: {status:?}"
            );
        }
    }

    /// A clean stop: SIGTERM, then its exit status (the caller checks it).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        assert!(
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        c.wait().unwrap()
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Riskgate {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Logs of the in-process gateway into the test's captured output.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}
