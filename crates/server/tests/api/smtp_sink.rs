//! A real SMTP server for tests: speaks enough ESMTP for a client to deliver, and hands
//! every message over a channel.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A delivered message.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The raw message (headers and body).
    pub data: String,
}

/// A running sink.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub mail: mpsc::UnboundedReceiver<Mail>,
}

impl SmtpSink {
    /// Starts a sink on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let addr = listener.local_addr().expect("an address");
        let (tx, mail) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, tx.clone()));
            }
        });
        Self { addr, mail }
    }

    /// The URL for `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The next message, waiting at most ten seconds.
    pub async fn next(&mut self) -> Mail {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.mail.recv())
            .await
            .expect("a mail within ten seconds")
            .expect("the sink is running")
    }
}

async fn serve(socket: tokio::net::TcpStream, tx: mpsc::UnboundedSender<Mail>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut reply = async |text: &str| write.write_all(text.as_bytes()).await.is_ok();
    if !reply("220 sink ESMTP ready\r\n").await {
        return;
    }
    let mut to = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" | "HELO" => reply("250-sink\r\n250 8BITMIME\r\n").await,
            "MAIL" => {
                to.clear();
                reply("250 OK\r\n").await
            }
            "RCPT" => {
                let address = line.split_once(':').map_or("", |(_, a)| a);
                to.push(address.trim().trim_matches(['<', '>']).to_owned());
                reply("250 OK\r\n").await
            }
            "DATA" => {
                if !reply("354 end with <CRLF>.<CRLF>\r\n").await {
                    return;
                }
                let mut data = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                    data.push_str(&line);
                    data.push('\n');
                }
                let _ = tx.send(Mail {
                    to: to.clone(),
                    data,
                });
                reply("250 queued\r\n").await
            }
            "RSET" | "NOOP" => reply("250 OK\r\n").await,
            "QUIT" => {
                let _ = reply("221 bye\r\n").await;
                return;
            }
            _ => reply("502 not implemented\r\n").await,
        };
        if !ok {
            return;
        }
    }
}
