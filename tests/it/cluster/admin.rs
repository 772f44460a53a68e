//! The test's own RESP2 connection to Redis, for what a test does behind the nodes'
//! backs: `CLIENT LIST`, `CLIENT KILL`, `CLIENT PAUSE`, `CONFIG SET`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::WAIT;

/// The test's own RESP2 connection to Redis, for what it does behind the nodes' backs.
pub struct RedisAdmin {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A RESP2 reply, as read (an error reply is a value here, for the test to compare).
#[derive(Debug, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl RedisAdmin {
    pub fn connect(port: u16) -> RedisAdmin {
        let writer = TcpStream::connect(("127.0.0.1", port)).expect("connect to Redis");
        writer.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        RedisAdmin { reader, writer }
    }

    pub fn call(&mut self, args: &[&str]) -> Reply {
        let mut command = format!("*{}\r\n", args.len());
        for arg in args {
            command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.writer
            .write_all(command.as_bytes())
            .expect("send to Redis");
        self.read_reply()
    }

    fn read_reply(&mut self) -> Reply {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("a reply from Redis");
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        let number = || rest.parse::<i64>().expect("a number");
        match kind {
            "+" => Reply::Status(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(number()),
            "$" if number() < 0 => Reply::Bulk(None),
            "$" => {
                let mut data = vec![0; number() as usize + 2];
                self.reader.read_exact(&mut data).expect("a bulk string");
                data.truncate(data.len() - 2);
                Reply::Bulk(Some(String::from_utf8(data).expect("UTF-8")))
            }
            "*" => Reply::Array((0..number()).map(|_| self.read_reply()).collect()),
            _ => panic!("not a RESP2 reply: {line:?}"),
        }
    }

    /// `CLIENT LIST`: each connection's fields.
    fn clients(&mut self) -> Vec<HashMap<String, String>> {
        let Reply::Bulk(Some(list)) = self.call(&["CLIENT", "LIST"]) else {
            panic!("CLIENT LIST answered otherwise");
        };
        list.lines()
            .map(|line| {
                let fields = line.split(' ').filter_map(|field| field.split_once('='));
                fields
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// The fields of connection `id`, if it is open.
    pub fn client(&mut self, id: u64) -> Option<HashMap<String, String>> {
        let id = id.to_string();
        self.clients().into_iter().find(|fields| fields["id"] == id)
    }

    /// The id of the one node's link: the only connection speaking RESP3 (this one
    /// speaks RESP2).
    pub fn only_link(&mut self) -> u64 {
        let links: Vec<u64> = (self.clients().into_iter())
            .filter(|fields| fields["resp"] == "3")
            .map(|fields| fields["id"].parse().expect("a numeric id"))
            .collect();
        match links[..] {
            [id] => id,
            _ => panic!("expected one node's link, found {links:?}"),
        }
    }
}
