//! `vgpud` on this host as a user runs it: the static daemon binary with its own config and
//! run directories (and policy file), instances defined and started with `vgpuctl`. The QEMU
//! tests and the two-VM demo drive it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mdev::control::Status;

use crate::static_bins::StaticBins;
use crate::Error;

/// How long the daemon may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
/// A running `vgpud --backend sim`, killed on drop.
pub struct Vgpud {
    child: Child,
    vgpuctl: PathBuf,
    dir: tempfile::TempDir,
}

impl Vgpud {
    /// Starts the daemon from `bins`, with `policy` (TOML) as its policy file if given, and
    /// waits for its control socket.
    pub fn start(bins: &StaticBins, policy: Option<&str>) -> Result<Vgpud, Error> {
        let tmp = std::env::temp_dir();
        let dir = tempfile::tempdir().map_err(|e| Error::io(&tmp, e))?;
        let mut cmd = Command::new(&bins.vgpud);
        cmd.arg("--config-dir")
            .arg(dir.path().join("conf"))
            .arg("--run-dir")
            .arg(dir.path().join("run"));
        if let Some(text) = policy {
            let path = dir.path().join("policy.toml");
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
            cmd.arg("--policy").arg(path);
        }
        let log_path = dir.path().join("vgpud.log");
        let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .map_err(|e| Error::io(&bins.vgpud, e))?;
        let mut daemon = Vgpud {
            child,
            vgpuctl: bins.vgpuctl.clone(),
            dir,
        };
        let started = Instant::now();
        while !daemon.run_dir().join("vgpud.sock").exists() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(Error::Run(format!(
                    "vgpud exited ({status}):\n{}",
                    daemon.log()
                )));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Error::Run(format!(
                    "vgpud opened no control socket in {START_TIMEOUT:?}:\n{}",
                    daemon.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    /// The daemon's run directory (its sockets).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Replaces the policy file's content at once (a rename, as editors save), which the
    /// daemon reloads.
    pub fn set_policy(&self, text: &str) -> Result<(), Error> {
        let new = self.dir.path().join("policy.toml.new");
        std::fs::write(&new, text).map_err(|e| Error::io(&new, e))?;
        std::fs::rename(&new, self.dir.path().join("policy.toml")).map_err(|e| Error::io(&new, e))
    }

    /// Runs `vgpuctl ARGS` against this daemon: its stdout; its stderr in the error.
    pub fn vgpuctl(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new(&self.vgpuctl)
            .arg("--run-dir")
            .arg(self.run_dir())
            .args(args)
            .output()
            .map_err(|e| Error::io(&self.vgpuctl, e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(Error::Tool(format!(
                "vgpuctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Defines and starts an instance; its vfio-user socket.
    pub fn new_instance(&self, vgpu_type: &str, gfid: u32, tenant: &str) -> Result<PathBuf, Error> {
        let gfid = gfid.to_string();
        let args = [
            "define", "--type", vgpu_type, "--gfid", &gfid, "--tenant", tenant,
        ];
        let uuid = self.vgpuctl(&args)?;
        Ok(PathBuf::from(self.vgpuctl(&["start", "--uuid", &uuid])?))
    }

    /// `vgpuctl status --json`.
    pub fn status(&self) -> Result<Status, Error> {
        let json = self.vgpuctl(&["status", "--json"])?;
        serde_json::from_str(&json).map_err(|e| Error::Tool(format!("vgpuctl status: {e}: {json}")))
    }

    /// Polls `status` until `done` holds (the daemon notices a VM's departure when it reads
    /// the closed socket, a moment after QEMU exits); the last status either way.
    pub fn status_when(
        &self,
        timeout: Duration,
        done: impl Fn(&Status) -> bool,
    ) -> Result<Status, Error> {
        let start = Instant::now();
        loop {
            let status = self.status()?;
            if done(&status) || start.elapsed() > timeout {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vgpud.log")).unwrap_or_default()
    }

    /// Where the daemon's files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Vgpud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
