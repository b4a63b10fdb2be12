//! TLS: the provider reaches a PostgreSQL server that refuses connections without it.
//!
//! The test starts a server of its own (PostgreSQL's `initdb` and `postgres`, found on `PATH` or
//! under `/usr/lib/postgresql/*/bin`) on a free port, with a certificate made by `openssl` and
//! signed by a self-signed authority of the test's own, and a `pg_hba.conf` that accepts TLS
//! connections only. `EVT_POSTGRES_TLS_URL` (e.g. a hosted server's URL with `sslmode=require`)
//! tests against that server instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use evt_core::{NewEvent, Provider};
use evt_postgres::PostgresProvider;
use serde_json::json;

/// A PostgreSQL server that accepts TLS connections only, stopped and removed on drop.
struct TlsServer {
    dir: PathBuf,
    port: u16,
    server: Child,
}

impl TlsServer {
    fn start() -> TlsServer {
        let initdb = binary("initdb");
        let postgres = binary("postgres");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("evt-tls-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A certificate authority of the test's own, and the server's certificate signed by it.
        let file = |name: &str| path(&dir.join(name));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args([
                "-days",
                "2",
                "-subj",
                "/CN=evt test CA",
                "-keyout",
                &file("ca.key"),
                "-out",
                &file("ca.crt"),
            ]));
        run(Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes"])
            .args([
                "-subj",
                "/CN=localhost",
                "-keyout",
                &file("server.key"),
                "-out",
                &file("server.csr"),
            ]));
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2"])
            .args([
                "-in",
                &file("server.csr"),
                "-CA",
                &file("ca.crt"),
                "-CAkey",
                &file("ca.key"),
                "-CAcreateserial",
                "-extfile",
                &file("server.ext"),
                "-out",
                &file("server.crt"),
            ]));
        run(Command::new("chmod").args(["600", &path(&dir.join("server.key"))]));
        // PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        if root {
            run(Command::new("chown").args(["-R", "postgres", &path(&dir)]));
        }
        let as_server = |program: &Path| {
            if root {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            } else {
                Command::new(program)
            }
        };
        let data = dir.join("data");
        run(as_server(&initdb).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "-D",
            &path(&data),
        ]));
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let server = as_server(&postgres)
            .args(["-D", &path(&data), "-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("unix_socket_directories={}", path(&dir))])
            .args(["-c", "ssl=on"])
            .args([
                "-c",
                &format!("ssl_cert_file={}", path(&dir.join("server.crt"))),
            ])
            .args([
                "-c",
                &format!("ssl_key_file={}", path(&dir.join("server.key"))),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let server = TlsServer { dir, port, server };
        // Until it accepts connections: a server still starting up accepts TCP connections but
        // refuses sessions ("the database system is starting up"); `pg_isready` tells them apart.
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = binary("pg_isready");
        while !Command::new(&ready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success())
        {
            assert!(
                Instant::now() < deadline,
                "the TLS server did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self, parameters: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{parameters}",
            self.port
        )
    }

    /// The certificate of the authority that signed the server's.
    fn authority(&self) -> String {
        path(&self.dir.join("ca.crt"))
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL server binary, from `PATH` or Debian's `/usr/lib/postgresql/<version>/bin`.
fn binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin").join(name));
    on_path.chain(debian).find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's `{name}` is not installed: `scripts/postgres-server start` installs it \
             (as root), or set EVT_POSTGRES_TLS_URL to a server that requires TLS"
        )
    })
}

/// Appends and reads back through `provider`: the connection works for real.
async fn round_trip(provider: &PostgresProvider, id: &str) {
    provider.migrate().await.unwrap();
    let id = format!("{id}-{}", std::process::id());
    let event = NewEvent::from_value("noted", &json!({"type": "noted", "over": "tls"}));
    provider
        .append("examples", &id, 0, &[event], None)
        .await
        .unwrap();
    let read = provider
        .aggregate_events("examples", &id, 0, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].value()["over"], "tls");
}

#[tokio::test]
async fn a_server_that_requires_tls_is_reached_with_sslmode_require() {
    if let Ok(url) = std::env::var("EVT_POSTGRES_TLS_URL") {
        round_trip(&PostgresProvider::connect(&url).await.unwrap(), "required").await;
        return;
    }
    let server = TlsServer::start();

    let plain = PostgresProvider::connect(&server.url("sslmode=disable")).await;
    let refused = plain
        .expect_err("the server accepts TLS connections only")
        .to_string();
    assert!(refused.contains("no encryption"), "{refused}");

    let provider = PostgresProvider::connect(&server.url("sslmode=require"))
        .await
        .unwrap();
    round_trip(&provider, "required").await;

    // The server's certificate is trusted only with its authority given as the root.
    let unverified = PostgresProvider::connect(&server.url("sslmode=verify-full")).await;
    assert!(
        unverified.is_err(),
        "a certificate no root vouches for is refused"
    );
    let root = format!("sslmode=verify-full&sslrootcert={}", server.authority());
    let verified = PostgresProvider::connect(&server.url(&root)).await.unwrap();
    round_trip(&verified, "verified").await;
}
