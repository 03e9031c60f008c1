//! A deterministic simulation of the membership layer alone: many
//! [`Swim`] state machines, a virtual clock, and a network that delays,
//! loses, partitions and holds packets, all from one seed.
//!
//! Shared by `tests/membership_sim.rs` and `benches/membership.rs`.
#![allow(dead_code)]

#[path = "fake_creds.rs"]
pub mod fake_creds;
#[path = "signed_sim.rs"]
pub mod signed;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use bytes::Bytes;
use gridkv::membership::trust::CertRole;
use gridkv::membership::{Identity, Liveness, MemberEvent, Output, RingState, Swim, SwimConfig};
use gridkv::{Generation, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A packet on its way: `(arrival, order, to, from, packet)`.
type InFlight = (Duration, u64, usize, usize, Bytes);

/// A simulated cluster.
pub struct Sim {
    pub seed: u64,
    pub now: Duration,
    pub config: SwimConfig,
    pub nodes: Vec<SimNode>,
    queue: BinaryHeap<Reverse<InFlight>>,
    sent: u64,
    rng: StdRng,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// One-way latency range.
    pub latency: (Duration, Duration),
    /// Extra one-way latency on every packet to or from these nodes (a
    /// slow, overloaded node).
    pub slow: BTreeMap<usize, Duration>,
    /// Node pairs (both directions) that cannot talk.
    blocked: BTreeSet<(usize, usize)>,
    by_addr: BTreeMap<String, usize>,
    /// Every event, with its time and node.
    pub events: Vec<(Duration, usize, MemberEvent)>,
    /// Bytes sent per node.
    pub bytes_sent: Vec<u64>,
    /// How long a joined node takes to "fill" its ranges before it marks
    /// itself normal; `None` leaves it to the test.
    pub fill_delay: Option<Duration>,
    /// With signed membership: the cluster's fake CA; every node gets
    /// credentials from it and the network authenticates senders.
    pub ca: Option<fake_creds::FakeCa>,
    /// Each node's datacenter label (default `default`), set as it starts.
    pub datacenters: Vec<String>,
    /// Packets between nodes of different datacenters take this one-way
    /// latency range and this loss instead of `latency` and `loss`.
    pub wan: Option<((Duration, Duration), f64)>,
}

pub struct SimNode {
    pub id: NodeId,
    pub addr: String,
    pub seeds: Vec<String>,
    pub swim: Option<Swim>,
    pub generation: u64,
    pub paused: bool,
    held: Vec<(usize, Bytes)>,
    fill_at: Option<Duration>,
}

impl SimNode {
    pub fn running(&self) -> bool {
        self.swim.is_some()
    }
}

pub fn name(i: usize) -> NodeId {
    NodeId::new(&format!("n{i}")).unwrap()
}

impl Sim {
    /// `n` nodes, not started, each seeded with node 0's address.
    pub fn new(seed: u64, n: usize, config: SwimConfig) -> Sim {
        let mut sim = Sim {
            seed,
            now: Duration::ZERO,
            config,
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            sent: 0,
            rng: StdRng::seed_from_u64(seed),
            loss: 0.0,
            latency: (Duration::from_micros(200), Duration::from_micros(1500)),
            blocked: BTreeSet::new(),
            slow: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            events: Vec::new(),
            bytes_sent: vec![0; n],
            fill_delay: Some(Duration::ZERO),
            ca: None,
            datacenters: vec!["default".to_owned(); n],
            wan: None,
        };
        for i in 0..n {
            let addr = format!("10.0.{}.{}:7946", i / 250, i % 250);
            sim.by_addr.insert(addr.clone(), i);
            sim.nodes.push(SimNode {
                id: name(i),
                addr,
                seeds: vec!["10.0.0.0:7946".to_owned()],
                swim: None,
                generation: 0,
                paused: false,
                held: Vec::new(),
                fill_at: None,
            });
        }
        sim
    }

    /// `n` nodes with signed membership: each gets fake credentials from
    /// one CA, and every packet's sender is authenticated.
    pub fn new_signed(seed: u64, n: usize, config: SwimConfig) -> Sim {
        let mut sim = Sim::new(seed, n, config);
        sim.ca = Some(fake_creds::FakeCa::new(seed));
        sim
    }

    /// The credentials node `i` gets (signed simulations).
    pub fn creds(&self, i: usize) -> std::sync::Arc<fake_creds::FakeCreds> {
        let ca = self.ca.as_ref().expect("a signed simulation");
        ca.creds(self.seed, self.nodes[i].id.as_str(), CertRole::Node)
    }

    /// Starts (or restarts, with a later generation) node `i`.
    pub fn start(&mut self, i: usize) {
        let creds = self.ca.is_some().then(|| self.creds(i));
        let node = &mut self.nodes[i];
        node.generation += 1;
        let mut identity =
            Identity::new(node.id, Generation::new(node.generation), node.addr.clone());
        identity.datacenter = self.datacenters[i].clone();
        let rng_seed = self.seed ^ ((i as u64) << 32) ^ node.generation;
        let mut swim = Swim::new(
            identity,
            self.config.clone(),
            node.seeds.clone(),
            rng_seed,
            self.now,
        )
        .expect("valid config");
        if let Some(creds) = creds {
            swim.set_cluster_name("sim").unwrap();
            swim.set_credentials(creds).unwrap();
        }
        node.swim = Some(swim);
        node.paused = false;
        node.held.clear();
        node.fill_at = None;
        self.drain(i);
    }

    /// Starts every node, `stagger` apart.
    pub fn start_all(&mut self, stagger: Duration) {
        for i in 0..self.nodes.len() {
            self.start(i);
            self.run_for(stagger);
        }
    }

    /// Starts a node under `i`'s id at another address (a duplicate).
    pub fn start_impostor(&mut self, i: usize, addr: &str) -> usize {
        let idx = self.nodes.len();
        self.by_addr.insert(addr.to_owned(), idx);
        self.bytes_sent.push(0);
        self.datacenters.push(self.datacenters[i].clone());
        self.nodes.push(SimNode {
            id: self.nodes[i].id,
            addr: addr.to_owned(),
            seeds: self.nodes[i].seeds.clone(),
            swim: None,
            generation: self.nodes[i].generation + 100,
            paused: false,
            held: Vec::new(),
            fill_at: None,
        });
        self.start(idx);
        idx
    }

    /// Stops node `i` dead: no leave, packets to it are lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].swim = None;
        self.nodes[i].held.clear();
    }

    /// Freezes node `i`: it runs no timers and handles no packets; packets
    /// to it wait (like a stopped process's socket buffer).
    pub fn pause(&mut self, i: usize) {
        self.nodes[i].paused = true;
    }

    /// Unfreezes node `i` and hands it what arrived meanwhile.
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].paused = false;
        let held = std::mem::take(&mut self.nodes[i].held);
        for (from, p) in held {
            self.deliver(i, from, p);
        }
    }

    /// Graceful leave of node `i`; it stops after sending its news.
    pub fn leave(&mut self, i: usize) {
        if let Some(s) = self.nodes[i].swim.as_mut() {
            s.leave(self.now);
        }
        self.drain(i);
        self.nodes[i].swim = None;
    }

    /// Cuts every pair across `groups` (nodes in no group keep all links).
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (gi, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(gi + 1) {
                for &x in a.iter() {
                    for &y in b.iter() {
                        self.blocked.insert((x.min(y), x.max(y)));
                    }
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn swim(&self, i: usize) -> &Swim {
        self.nodes[i].swim.as_ref().expect("node running")
    }

    pub fn swim_mut(&mut self, i: usize) -> &mut Swim {
        self.nodes[i].swim.as_mut().expect("node running")
    }

    /// Calls `f` on node `i`'s state machine and routes what it asks for.
    pub fn with_node(&mut self, i: usize, f: impl FnOnce(&mut Swim, Duration)) {
        let now = self.now;
        if let Some(s) = self.nodes[i].swim.as_mut() {
            f(s, now);
        }
        self.drain(i);
    }

    /// What node `i` thinks of node `j`.
    pub fn view(&self, i: usize, j: usize) -> Option<(Liveness, RingState, u64)> {
        let s = self.nodes[i].swim.as_ref()?;
        s.member(&self.nodes[j].id)
            .map(|m| (m.liveness, m.ring, m.identity.generation.get()))
    }

    /// Whether every running node sees every running node alive at its
    /// current generation, and every stopped node as not reachable (or
    /// not at all).
    pub fn converged(&self) -> bool {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].running() && !self.is_impostor(i))
            .collect();
        for &i in &running {
            if self.nodes[i].paused {
                return false;
            }
            for j in 0..self.nodes.len() {
                if i == j || self.is_impostor(j) {
                    continue;
                }
                let view = self.view(i, j);
                if self.nodes[j].running() {
                    match view {
                        Some((Liveness::Alive, ring, r#gen))
                            if r#gen == self.nodes[j].generation && ring.receives_writes() => {}
                        _ => return false,
                    }
                } else if let Some((l, _, r#gen)) = view {
                    if l.is_reachable() && r#gen == self.nodes[j].generation {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Every view that keeps [`Sim::converged`] false, for failure messages.
    pub fn disagreements(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].running() || self.is_impostor(i) {
                continue;
            }
            for j in 0..self.nodes.len() {
                if i == j || self.is_impostor(j) {
                    continue;
                }
                let view = self.view(i, j);
                let ok = match view {
                    Some((Liveness::Alive, ring, r#gen)) if self.nodes[j].running() => {
                        r#gen == self.nodes[j].generation && ring.receives_writes()
                    }
                    Some((l, _, r#gen)) if !self.nodes[j].running() => {
                        !(l.is_reachable() && r#gen == self.nodes[j].generation)
                    }
                    None => !self.nodes[j].running(),
                    _ => false,
                };
                if !ok {
                    out.push(format!(
                        "n{i} sees n{j} as {view:?} (n{j} running: {}, gen {})",
                        self.nodes[j].running(),
                        self.nodes[j].generation
                    ));
                }
            }
        }
        out
    }

    fn is_impostor(&self, i: usize) -> bool {
        self.nodes[..i].iter().any(|n| n.id == self.nodes[i].id)
    }

    /// Runs until `pred` holds (checked after each step) or `limit`
    /// passes; returns the time it took, if it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = self.now + limit;
        loop {
            if pred(self) {
                return Some(self.now - start);
            }
            if !self.step(end) {
                return pred(self).then(|| self.now - start);
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step(end) {}
    }

    /// Advances to the next thing that happens, if it is before `end`.
    fn step(&mut self, end: Duration) -> bool {
        let mut next = end;
        if let Some(Reverse((t, ..))) = self.queue.peek() {
            next = next.min(*t);
        }
        for n in &self.nodes {
            if let (Some(s), false) = (&n.swim, n.paused) {
                next = next.min(s.next_deadline());
                if let Some(f) = n.fill_at {
                    next = next.min(f);
                }
            }
        }
        if next >= end {
            self.now = end;
            return false;
        }
        self.now = self.now.max(next);
        while let Some(Reverse((t, ..))) = self.queue.peek() {
            if *t > self.now {
                break;
            }
            let Reverse((_, _, to, from, packet)) = self.queue.pop().unwrap();
            self.deliver(to, from, packet);
        }
        for i in 0..self.nodes.len() {
            let now = self.now;
            let node = &mut self.nodes[i];
            if node.paused {
                continue;
            }
            let Some(s) = node.swim.as_mut() else {
                continue;
            };
            if node.fill_at.is_some_and(|f| f <= now) {
                node.fill_at = None;
                s.mark_filled(now);
            }
            if s.next_deadline() <= now {
                s.handle_timers(now);
            }
            self.drain(i);
        }
        true
    }

    fn deliver(&mut self, to: usize, from: usize, packet: Bytes) {
        let signed = self.ca.is_some();
        let sender = self.nodes[from].id;
        let node = &mut self.nodes[to];
        if node.paused {
            if node.swim.is_some() && node.held.len() < 100_000 {
                node.held.push((from, packet));
            }
            return;
        }
        let now = self.now;
        if let Some(s) = node.swim.as_mut() {
            if signed {
                s.handle_packet_from(now, Some(sender), &packet)
                    .expect("valid packet");
            } else {
                s.handle_packet(now, &packet).expect("valid packet");
            }
            self.drain(to);
        }
    }

    /// Hands `packet` to node `to` now, as if the transport had
    /// authenticated its sender as `authenticated` (an attacker's packet).
    pub fn inject(
        &mut self,
        to: usize,
        authenticated: Option<NodeId>,
        packet: &[u8],
    ) -> Result<(), gridkv::membership::wire::WireError> {
        let now = self.now;
        let result = match self.nodes[to].swim.as_mut() {
            Some(s) => s.handle_packet_from(now, authenticated, packet),
            None => Ok(()),
        };
        self.drain(to);
        result
    }

    fn drain(&mut self, i: usize) {
        // A run may take the next generation in place (an operator removed
        // it, or its clock stepped back): the sim follows.
        if let Some(s) = self.nodes[i].swim.as_ref() {
            self.nodes[i].generation = s.local().identity.generation.get();
        }
        loop {
            let Some(s) = self.nodes[i].swim.as_mut() else {
                return;
            };
            let Some(out) = s.poll_output() else { break };
            match out {
                Output::Send { to, packet } => {
                    self.bytes_sent[i] += packet.len() as u64;
                    let Some(&j) = self.by_addr.get(&to) else {
                        continue;
                    };
                    if self.blocked.contains(&(i.min(j), i.max(j))) {
                        continue;
                    }
                    let ((lo, hi), loss) = match self.wan {
                        Some(wan) if self.datacenters[i] != self.datacenters[j] => wan,
                        _ => (self.latency, self.loss),
                    };
                    if loss > 0.0 && self.rng.random_bool(loss) {
                        continue;
                    }
                    let mut delay = lo + (hi - lo).mul_f64(self.rng.random::<f64>());
                    for k in [i, j] {
                        delay += self.slow.get(&k).copied().unwrap_or_default();
                    }
                    self.sent += 1;
                    self.queue
                        .push(Reverse((self.now + delay, self.sent, j, i, packet)));
                }
                Output::Event(e) => {
                    self.events.push((self.now, i, e));
                }
            }
        }
        // A joined node that is joining fills its ranges after the delay.
        let node = &mut self.nodes[i];
        if let (Some(delay), Some(s)) = (self.fill_delay, node.swim.as_ref()) {
            if s.is_joined() && s.local().ring == RingState::Joining && node.fill_at.is_none() {
                node.fill_at = Some(self.now + delay);
            }
        }
    }

    /// Events about node `j` (by id) seen by any node, after `since`.
    pub fn events_about(
        &self,
        j: usize,
        since: Duration,
    ) -> impl Iterator<Item = (Duration, usize, &gridkv::membership::Member)> + '_ {
        let id = self.nodes[j].id;
        self.events.iter().filter_map(move |(t, at, e)| match e {
            MemberEvent::Changed { member, .. } if member.id() == id && *t >= since => {
                Some((*t, *at, member))
            }
            _ => None,
        })
    }
}

/// Seeds to run: `GRIDKV_SEED` replays one, `GRIDKV_SIM_SEEDS` sets how
/// many (default `default`).
pub fn seeds(default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("GRIDKV_SEED") {
        return vec![s.parse().expect("GRIDKV_SEED is a number")];
    }
    let n = std::env::var("GRIDKV_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

/// Runs `f` for one seed, printing the seed (and how to replay it) if it
/// panics.
pub fn with_seed(seed: u64, f: impl FnOnce(u64)) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
    if let Err(e) = result {
        eprintln!("failed with seed {seed}; replay with GRIDKV_SEED={seed}");
        std::panic::resume_unwind(e);
    }
}
