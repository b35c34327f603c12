//! Clusters for tests: a real `redis-server` per test, on a unix socket in a temporary
//! directory of its own, and nodes that have registered with it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard_server::{ClusterConfig, Config, NodeId, RedisUrl};
use tokio::time::{sleep, timeout};

use super::{TestServer, PATIENCE};

/// A redis-server of our own, stopped (by its pid) when dropped.
pub struct Redis {
    pub dir: PathBuf,
    child: Child,
}

impl Redis {
    pub fn start(dir: PathBuf) -> Redis {
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(socket.exists(), "redis-server did not start");
        Redis { dir, child }
    }

    pub fn new() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-cluster-{}-{:x}",
            std::process::id(),
            switchboard_server::random_node_id()
        ));
        Redis::start(dir)
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.dir.join("redis.sock"))
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops this Redis; its data is gone (it never saves).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join("redis.sock"));
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn node_config(redis: &Redis, node: u64, lease: Duration) -> Config {
    let mut config = Config::for_tests();
    config.media = false;
    config.cluster = Some(ClusterConfig {
        url: RedisUrl::parse(&redis.url()).unwrap(),
        node: NodeId(node),
        lease,
        prefix: "sb".into(),
        capacity: 8192,
        max_envelope: 1 << 20,
        max_room_members: None,
    });
    config
}

/// A node that has registered with Redis (its `/readyz` says so).
pub async fn node(redis: &Redis, id: u64) -> TestServer {
    node_with(node_config(redis, id, Duration::from_secs(10))).await
}

pub async fn node_with(config: Config) -> TestServer {
    let server = super::start_with(config).await;
    until_ready(&server, 200).await;
    server
}

pub async fn until_ready(server: &TestServer, status: u16) {
    timeout(PATIENCE, async {
        while server.get("/readyz").await.status != status {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz never answered {status}"));
}
