//! `vgpud` as a user runs it: the static daemon binary with its own config and run
//! directories (and policy file), instances defined and started with `vgpuctl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use images::static_bins::StaticBins;
use mdev::control::Status;

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
    pub fn start(bins: &StaticBins, policy: Option<&str>) -> Vgpud {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cmd = Command::new(&bins.vgpud);
        cmd.arg("--config-dir")
            .arg(dir.path().join("conf"))
            .arg("--run-dir")
            .arg(dir.path().join("run"));
        if let Some(text) = policy {
            let path = dir.path().join("policy.toml");
            std::fs::write(&path, text).expect("writing the policy");
            cmd.arg("--policy").arg(path);
        }
        let log = std::fs::File::create(dir.path().join("vgpud.log")).expect("the daemon's log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the daemon's log"))
            .stderr(log)
            .spawn()
            .expect("starting vgpud");
        let mut daemon = Vgpud {
            child,
            vgpuctl: bins.vgpuctl.clone(),
            dir,
        };
        let started = Instant::now();
        while !daemon.run_dir().join("vgpud.sock").exists() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("vgpud exited ({status}):\n{}", daemon.log());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "vgpud opened no control socket in {START_TIMEOUT:?}:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// The daemon's run directory (its sockets).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Replaces the policy file's content at once (a rename, as editors save), which the
    /// daemon reloads.
    pub fn set_policy(&self, text: &str) {
        let new = self.dir.path().join("policy.toml.new");
        std::fs::write(&new, text).expect("writing the policy");
        std::fs::rename(&new, self.dir.path().join("policy.toml")).expect("replacing the policy");
    }

    /// Runs `vgpuctl ARGS` against this daemon: its stdout, or its stderr as the error.
    pub fn vgpuctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.vgpuctl)
            .arg("--run-dir")
            .arg(self.run_dir())
            .args(args)
            .output()
            .expect("running vgpuctl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Defines and starts an instance; its vfio-user socket.
    pub fn new_instance(&self, vgpu_type: &str, gfid: u32, tenant: &str) -> PathBuf {
        let gfid = gfid.to_string();
        let uuid = self
            .vgpuctl(&[
                "define", "--type", vgpu_type, "--gfid", &gfid, "--tenant", tenant,
            ])
            .expect("vgpuctl define");
        let socket = self
            .vgpuctl(&["start", "--uuid", &uuid])
            .expect("vgpuctl start");
        PathBuf::from(socket)
    }

    /// `vgpuctl status --json`.
    pub fn status(&self) -> Status {
        let json = self.vgpuctl(&["status", "--json"]).expect("vgpuctl status");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("vgpuctl status: {e}: {json}"))
    }

    /// Polls `status` until `done` holds (the daemon notices a VM's departure when it reads
    /// the closed socket, a moment after QEMU exits); the last status either way.
    pub fn status_when(&self, timeout: Duration, done: impl Fn(&Status) -> bool) -> Status {
        let start = Instant::now();
        loop {
            let status = self.status();
            if done(&status) || start.elapsed() > timeout {
                return status;
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
