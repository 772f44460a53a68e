//! What the room tests run against: a [`Setup`] (the cores of one stand-alone server,
//! or the nodes of a cluster over one Redis), started as [`Rooms`] with a probe client
//! on every core or node for the marker fence; and [`IdParts`], a `client_id` of
//! either form taken apart.

use std::fmt;
use std::net::SocketAddr;

use ringcast::config::{Config, CpuSelection};
use ringcast::rooms::{home_of, RoomsApp};
use ringcast::runtime::Stats;
use serde_json::{json, Value};

use super::{normalize, private_from, send_private, RoomClient};
use crate::redis::RedisServer;
use crate::{start_node, start_server, wait_until, Server};

/// Where a test's clients are served: the cores of one stand-alone server, or the
/// nodes of a cluster (one core each, one Redis). Tests put clients on "places": core
/// `i` of the server, or node `i` of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    Cores(usize),
    Nodes(usize),
}

impl Setup {
    /// How many places there are to put clients on.
    pub fn places(self) -> usize {
        match self {
            Setup::Cores(n) | Setup::Nodes(n) => n,
        }
    }

    /// How many cores each server (or node) has.
    pub fn cores_per_server(self) -> usize {
        match self {
            Setup::Cores(n) => n,
            Setup::Nodes(_) => 1,
        }
    }
}

/// A `client_id` taken apart: `client_<core>_<slot>_<generation>` from a stand-alone
/// server, `client_<node>_<core>_<slot>_<generation>` from a cluster node (`node`: 1
/// to 32 of `[A-Za-z0-9-]`). Its `Display` spells it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdParts {
    pub node: Option<String>,
    pub core: u64,
    pub slot: u64,
    pub generation: u64,
}

impl IdParts {
    /// Panics unless `id` is one of the two forms, spelled as the server spells it.
    pub fn parse(id: &str) -> IdParts {
        let parts: Vec<&str> = id.split('_').collect();
        let number = |part: &str| -> u64 {
            part.parse()
                .unwrap_or_else(|_| panic!("{id:?}: {part:?} is not a number"))
        };
        let parsed = match parts[..] {
            ["client", core, slot, generation] => IdParts {
                node: None,
                core: number(core),
                slot: number(slot),
                generation: number(generation),
            },
            ["client", node, core, slot, generation]
                if (1..=32).contains(&node.len())
                    && node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                IdParts {
                    node: Some(node.to_string()),
                    core: number(core),
                    slot: number(slot),
                    generation: number(generation),
                }
            }
            _ => panic!(
                "{id:?} is neither client_<core>_<slot>_<generation> \
                 nor client_<node>_<core>_<slot>_<generation>"
            ),
        };
        assert_eq!(
            parsed.to_string(),
            id,
            "not spelled as the server spells ids"
        );
        parsed
    }
}

impl fmt::Display for IdParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client_")?;
        if let Some(node) = &self.node {
            write!(f, "{node}_")?;
        }
        write!(f, "{}_{}_{}", self.core, self.slot, self.generation)
    }
}

/// A rooms server or cluster with one probe client per place, and the spare
/// connections made while looking for a client on a given core.
pub struct Rooms {
    // Dropped before the servers, so their shutdown does not wait on their closing
    // handshakes; the servers before the Redis their links say goodbye to.
    probes: Vec<RoomClient>,
    spares: Vec<Vec<RoomClient>>,
    servers: Vec<Server>,
    _redis: Option<RedisServer>,
    pub setup: Setup,
    /// On a cluster, node `i`'s id (learnt from its probe's `client_id`).
    nodes: Vec<String>,
    markers: u64,
}

impl Rooms {
    pub fn start(setup: Setup) -> Rooms {
        Rooms::start_with(setup, |_| {})
    }

    /// A server, or each node, with `tweak` applied to the test config; the rooms app
    /// gets the rate limit and client limits the config names, as `ringcast serve`
    /// gives them. Nodes are spread over the CPUs.
    pub fn start_with(setup: Setup, tweak: impl Fn(&mut Config)) -> Rooms {
        let (servers, redis) = match setup {
            Setup::Cores(cores) => (vec![start_server(RoomsApp::configured, cores, tweak)], None),
            Setup::Nodes(nodes) => {
                let redis = RedisServer::start();
                let cpus = every_cpu();
                let servers = (0..nodes)
                    .map(|node| {
                        start_node(&redis.url(), 1, |config| {
                            config.cpus = CpuSelection::List(vec![cpus[node % cpus.len()]]);
                            tweak(config);
                        })
                    })
                    .collect();
                (servers, Some(redis))
            }
        };
        let places = setup.places();
        let mut rooms = Rooms {
            probes: Vec::new(),
            spares: (0..places).map(|_| Vec::new()).collect(),
            servers,
            _redis: redis,
            setup,
            nodes: Vec::new(),
            markers: 0,
        };
        if let Setup::Nodes(_) = setup {
            rooms.nodes = (0..places)
                .map(|node| {
                    let probe = RoomClient::connect(rooms.servers[node].addr());
                    let id = IdParts::parse(&probe.id);
                    rooms.probes.push(probe);
                    id.node.expect("a cluster node's client_id names the node")
                })
                .collect();
        } else {
            rooms.probes = (0..places).map(|core| rooms.client_on(core)).collect();
        }
        rooms
    }

    pub fn places(&self) -> usize {
        self.setup.places()
    }

    /// The address that serves `place`: node `place`'s own; on a server, the one
    /// address of every core (the kernel picks the core, see [`Rooms::client_on`]).
    pub fn addr_of(&self, place: usize) -> SocketAddr {
        match self.setup {
            Setup::Cores(_) => self.servers[0].addr(),
            Setup::Nodes(_) => self.servers[place].addr(),
        }
    }

    /// The counters of `place`: its core's, or its node's.
    pub fn place_stats(&self, place: usize) -> Stats {
        match self.setup {
            Setup::Cores(_) => self.servers[0].core_stats(place as u16),
            Setup::Nodes(_) => self.servers[place].stats(),
        }
    }

    /// A counter summed over every server (or node).
    pub fn total(&self, counter: impl Fn(&Stats) -> u64) -> u64 {
        self.servers
            .iter()
            .map(|server| counter(&server.stats()))
            .sum()
    }

    /// Waits until `closed` connections have been counted closed in all: their
    /// cores have forgotten them.
    pub fn wait_closed(&self, what: &str, closed: u64) {
        wait_until(what, || (self.total(|s| s.closed) == closed).then_some(()));
    }

    /// The place a `client_id` names: its core, or its node's index. Panics on an id
    /// of the other form, or of an unknown node.
    pub fn place_of(&self, id: &str) -> usize {
        let parts = IdParts::parse(id);
        match (self.setup, parts.node) {
            (Setup::Cores(_), None) => parts.core as usize,
            (Setup::Nodes(_), Some(node)) => {
                assert_eq!(parts.core, 0, "{id}: nodes have one core");
                self.nodes
                    .iter()
                    .position(|n| *n == node)
                    .unwrap_or_else(|| panic!("{id}: not one of the nodes {:?}", self.nodes))
            }
            (setup, _) => panic!("{id}: not an id of {setup:?}"),
        }
    }

    /// A room name for tests that place rooms: on a server, one whose home core (the
    /// one keeping its count) is `home`; on a cluster, where Redis keeps every count,
    /// any name, distinct for each `home` as on a server.
    pub fn room_on(&self, home: usize, name: &str) -> String {
        match self.setup {
            Setup::Cores(cores) => (0..)
                .map(|n| format!("{name}-{n}"))
                .find(|room| home_of(room, cores).index() == home)
                .expect("some name hashes to every core"),
            Setup::Nodes(_) => format!("{name}-{home}"),
        }
    }

    /// A client served by `place`. On a server the kernel spreads connections over the
    /// cores by source port, so connect until one lands there (the others are kept as
    /// spares); on a cluster, connect to the node.
    pub fn client_on(&mut self, place: usize) -> RoomClient {
        if let Setup::Nodes(_) = self.setup {
            let client = RoomClient::connect(self.addr_of(place));
            assert_eq!(
                self.place_of(&client.id),
                place,
                "{}: node {place}'s",
                client.id
            );
            return client;
        }
        for _ in 0..200 {
            if let Some(client) = self.spares[place].pop() {
                return client;
            }
            let client = RoomClient::connect(self.addr_of(place));
            let core = self.place_of(&client.id);
            self.spares[core].push(client);
        }
        panic!("no connection landed on core {place} in 200 tries");
    }

    /// `N` clients, client `i` on place `i % places`.
    pub fn clients<const N: usize>(&mut self) -> [RoomClient; N] {
        std::array::from_fn(|i| self.client_on(i % self.places()))
    }

    pub fn clients_vec(&mut self, n: usize) -> Vec<RoomClient> {
        (0..n).map(|i| self.client_on(i % self.places())).collect()
    }

    /// The probes and spares: every other connected client, for broadcasts.
    pub fn bystanders(&mut self) -> impl Iterator<Item = &mut RoomClient> + '_ {
        self.probes
            .iter_mut()
            .chain(self.spares.iter_mut().flatten())
    }

    /// Proves nothing is queued for each client beyond what the test has read: a
    /// marker from a probe on every place must be the next thing each receives.
    ///
    /// It is also a fence: on a server, each core had handled everything it was told
    /// before, so a core that sent the client anything earlier has delivered it before
    /// the marker. On a cluster, a node's messages to another node go in order through
    /// its one Redis connection, and Redis hands each node its events in the order it
    /// ran them: what node `i` had handled before its probe's marker, and whatever
    /// Redis ran before that, reaches the client first. Not covered: what Redis sends
    /// back to the client's own node for that node's own request (the own probe's
    /// marker does not go through Redis); a test that needs it first asks something
    /// that Redis answers (see `leaving_last_member_removes_room`).
    pub fn assert_quiet<'a>(&mut self, clients: impl IntoIterator<Item = &'a mut RoomClient>) {
        for client in clients {
            let expected = self.send_markers(&client.id);
            client.expect_any_order(expected);
        }
    }

    /// [`Rooms::assert_quiet`] for the probes and spares.
    pub fn assert_bystanders_quiet(&mut self) {
        let ids: Vec<String> = self.bystanders().map(|c| c.id.clone()).collect();
        for (index, id) in ids.iter().enumerate() {
            let expected = self.send_markers(id);
            let client = self.bystanders().nth(index).expect("same bystanders");
            client.expect_any_order(expected);
        }
    }

    /// Everything queued for `client` up to a marker fence (see [`Rooms::assert_quiet`]).
    pub fn drain(&mut self, client: &mut RoomClient) -> Vec<Value> {
        let mut markers = self.send_markers(&client.id);
        let mut drained = Vec::new();
        while !markers.is_empty() {
            let message = client.recv();
            match markers
                .iter()
                .position(|m| normalize(message.clone(), m) == *m)
            {
                Some(index) => {
                    markers.swap_remove(index);
                }
                None => drained.push(message),
            }
        }
        drained
    }

    /// A marker from every probe to `to`; what `to` will receive.
    fn send_markers(&mut self, to: &str) -> Vec<Value> {
        self.markers += 1;
        let message = json!({ "marker": self.markers });
        self.probes
            .iter_mut()
            .map(|probe| {
                probe.send(&send_private(to, message.clone()));
                private_from(&probe.id, message.clone())
            })
            .collect()
    }
}

/// The CPUs this process may run on, as the server's default configuration finds them.
fn every_cpu() -> Vec<usize> {
    let config = Config {
        cores: None,
        ..Config::default()
    };
    config
        .resolve()
        .expect("the default config")
        .cpus()
        .to_vec()
}
