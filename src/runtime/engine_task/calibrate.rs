//! Calibration windows (标校) in the engine task: the API's requests to
//! open one, and the open windows published for `GET /api/calibrations`.
//! The engine closes a window by itself on a tick; this only opens.

use tokio::sync::mpsc;

use super::EngineTask;
use crate::api::CalibrateCmd;
use crate::rules::CalibrateError;

impl EngineTask {
    /// Where the API's calibration requests come from.
    pub fn calibrations(&mut self, rx: mpsc::Receiver<CalibrateCmd>) {
        self.calibrate = rx;
    }

    /// Opens the window (its events go out like any), answers with it.
    pub(super) fn open_calibration(&mut self, cmd: CalibrateCmd) {
        let opened = self
            .engine
            .calibrate(&cmd.point, cmd.length, &cmd.by, self.clock.now())
            .map(|out| self.emit(out))
            .and_then(|()| {
                // Opened just now, so it is listed; were it not, the
                // operator is told the point is unknown rather than "ok".
                self.engine
                    .calibrations()
                    .into_iter()
                    .find(|w| w.point == cmd.point)
                    .ok_or_else(|| CalibrateError::UnknownPoint(cmd.point.clone()))
            });
        self.publish_calibrations();
        let _ = cmd.reply.send(opened);
    }

    /// The open windows, for the API: rebuilt only when one opened,
    /// closed or got its cut test's result (this runs after every input).
    pub(super) fn publish_calibrations(&mut self) {
        let version = self.engine.calibrations_version();
        if version == self.calibrations_published {
            return;
        }
        self.calibrations_published = version;
        *self
            .shared
            .calibrations
            .write()
            .unwrap_or_else(|p| p.into_inner()) = self.engine.calibrations();
    }
}
