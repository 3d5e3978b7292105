//! The real `postern` binary run as a child process, for what only a process can show: a crash
//! (SIGKILL) and restart, the command line, and the demo.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::temp::TempDir;

/// The `postern` binary next to this test executable's folder (`target/<profile>/postern`).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("postern");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p postern` (the README's test command does)",
        bin.display()
    );
    bin
}

/// A running `postern serve`.
#[derive(Debug)]
pub struct RelayProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Every line the relay printed on standard output (its mail log).
    pub output: Arc<Mutex<Vec<String>>>,
    pub config_dir: TempDir,
}

impl RelayProcess {
    /// Starts `postern serve --config <file with text>` and waits until it listens.
    pub async fn start(config_text: &str) -> RelayProcess {
        let config_dir = TempDir::new("config");
        let path = config_dir.path().join("postern.toml");
        std::fs::write(&path, config_text).unwrap();
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start postern");
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::clone(&output);
        // Drained all the time: a full pipe would stall the relay's log writer.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let addr = crate::eventually("the relay to listen", || {
            let lines = output.lock().unwrap();
            lines.iter().find_map(|l| {
                l.split(" listening on ")
                    .nth(1)
                    .and_then(|a| a.trim().parse().ok())
            })
        })
        .await;
        RelayProcess {
            child,
            addr,
            output,
            config_dir,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    pub async fn wait_for_log(&self, needle: &str) -> String {
        crate::eventually(&format!("a log line with {needle:?}"), || {
            self.log().into_iter().find(|l| l.contains(needle))
        })
        .await
    }

    /// SIGKILL: no shutdown, no flush; what was promised must already be on disk.
    pub fn kill(mut self) {
        self.child.kill().expect("kill postern");
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// SIGTERM and wait for a clean exit. Async, because the relay's goodbyes (QUIT) go to
    /// receivers running on the test's own runtime, which must keep answering meanwhile.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        crate::eventually("postern to exit after SIGTERM", || {
            self.child.try_wait().ok().flatten()
        })
        .await
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
