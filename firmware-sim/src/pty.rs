//! A connected pair of pseudo-terminals, made by `socat`: a serial line on
//! one machine without hardware. A simulated RTU line opens one end, the
//! gateway (or a test) the other. Used by firmware-sim's and riskgate's
//! tests alike, so both exercise the same line.
//!
//! The socat process is started by this value and killed (by its own pid)
//! when it is dropped; nothing else is touched.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long socat may take to report its two ends.
const REPORT_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("cannot start socat (apt-get install socat): {0}")]
    Spawn(#[from] std::io::Error),
    #[error("socat did not report its pseudo-terminals within {0:?}")]
    NoReport(Duration),
}

/// Two pseudo-terminals joined by socat (raw, no echo): bytes written to
/// `a` are read from `b` and back.
pub struct PtyPair {
    child: Child,
    /// The first end's path, e.g. `/dev/pts/3`.
    pub a: String,
    /// The second end's path.
    pub b: String,
}

impl PtyPair {
    /// Starts socat and returns once it reported both ends.
    pub fn start() -> Result<PtyPair, PtyError> {
        let bin = if Path::new("/usr/bin/socat").exists() {
            "/usr/bin/socat"
        } else {
            "socat"
        };
        let mut child = Command::new(bin)
            .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(PtyError::NoReport(REPORT_LIMIT));
        };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // socat logs "N PTY is /dev/pts/N" for each end. The thread keeps
        // reading after that so that socat never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("PTY is ") {
                    let _ = tx.send(line[i + 7..].trim().to_string());
                }
            }
        });
        let mut pair = PtyPair {
            child,
            a: String::new(),
            b: String::new(),
        };
        // On an error `pair` is dropped, which stops socat.
        pair.a = rx
            .recv_timeout(REPORT_LIMIT)
            .map_err(|_| PtyError::NoReport(REPORT_LIMIT))?;
        pair.b = rx
            .recv_timeout(REPORT_LIMIT)
            .map_err(|_| PtyError::NoReport(REPORT_LIMIT))?;
        Ok(pair)
    }

    /// `start`, panicking with the reason: for tests.
    pub fn spawn() -> PtyPair {
        PtyPair::start().unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
