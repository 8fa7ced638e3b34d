//! A real moto_server per test: started on a free loopback port, awaited until it answers,
//! killed on drop.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// A running moto_server.
pub struct MotoServer {
    endpoint: String,
    child: Child,
}

impl MotoServer {
    /// Starts moto_server through `tests/moto_server.py` (DynamoDB calls serialised; see that
    /// file) with `$MOTO_PYTHON` or `python3`, and waits until it serves requests.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let python = std::env::var("MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
        let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_server.py");
        let child = Command::new(&python)
            .arg(launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {python} {launcher}: install moto[server]"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let server = Self { endpoint, child };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The server's process id, to read the CPU it used.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Turns IAM enforcement on: from now on every request must be signed with the key of an
    /// IAM user whose policies allow it. moto starts with enforcement off (its
    /// `INITIAL_NO_AUTH_ACTION_COUNT` is infinite) so provisioning and the IAM users can be
    /// created first; `POST /moto-api/reset-auth` with body `0` sets the count of requests
    /// still let through to zero.
    pub async fn enforce_iam(&self) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connect to moto_server at {address}"))?;
        let request = "POST /moto-api/reset-auth HTTP/1.0\r\nHost: localhost\r\n\
                       Content-Length: 1\r\n\r\n0";
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response);
        let status = response.lines().next().unwrap_or_default();
        if !status.contains(" 200 ") {
            bail!("moto_server refused to enforce IAM: {status}");
        }
        Ok(())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = self.endpoint.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let request = "GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n";
                if stream.write_all(request.as_bytes()).await.is_ok() {
                    let mut head = [0u8; 12];
                    if stream.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/") {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "moto_server did not answer on {} within 30 s",
            self.endpoint
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}
