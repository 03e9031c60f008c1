//! Joins and identity: join attempts through the seeds, answering joins,
//! and telling a restart of a member from a second process that uses the
//! same id.
//!
//! A join naming an id that a live member holds under another generation
//! is a restart, unless the holder still answers a ping (an id check): a
//! later generation replaces the holder's entry; an earlier one (the
//! restarted node's wall clock stepped back) gets the table, finds its
//! previous run there, and takes the generation after it.

use std::time::Duration;

use super::{expired, MemberEvent, Output, Swim, MAX_FORWARDS};
use crate::id::Generation;
use crate::log_limit::{self, LogLimit};
use crate::membership::member::{Identity, RingState};
use crate::membership::wire::{Message, Update};

/// A join under a later generation of a live member's id, held back while
/// the holder is pinged.
#[derive(Debug)]
pub(super) struct IdCheck {
    joiner: Update,
    holder: Identity,
    pub(super) deadline: Duration,
}

impl Swim {
    /// Asks every seed to let this node in.
    pub(super) fn send_joins(&mut self) {
        for seed in self.seeds.clone() {
            self.send(seed, Message::Join);
        }
    }

    /// A member answered this node's join with its table. If the table
    /// holds this node's id under a later generation than its own, that
    /// is its previous run (the seed checked that it no longer answers;
    /// otherwise it would have refused the join), started when the wall
    /// clock read later than it does now: this run takes the next
    /// generation, so that it replaces that entry everywhere at once
    /// rather than once every member has forgotten it.
    pub(super) fn on_join_reply(&mut self, now: Duration, members: Vec<Update>) {
        let me = self.me.identity.id;
        let previous = members
            .iter()
            .filter(|u| u.identity.id == me)
            .map(|u| u.identity.generation)
            .max();
        if let Some(previous) = previous.filter(|g| *g > self.me.identity.generation) {
            if !self.joined {
                self.adopt_generation(Generation::new(previous.get().saturating_add(1)));
            }
        }
        for update in members {
            self.merge(now, update);
        }
        self.set_joined();
    }

    /// A seed refused this node's join: a live member holds its id.
    pub(super) fn on_join_refused(&mut self, holder: String) {
        if !self.joined {
            self.refused = true;
            self.outputs
                .push_back(Output::Event(MemberEvent::JoinRefused { holder }));
        }
    }

    /// Takes `generation` for this run (see [`Swim::on_join_reply`]; or
    /// once joined, `Swim::step_past_previous_run`).
    pub(super) fn adopt_generation(&mut self, generation: Generation) {
        let previous = self.me.clone();
        tracing::warn!(
            node = %self.me.identity.id,
            ours = %previous.identity.generation,
            taken = %generation,
            "the cluster knows a later run of this node (its wall clock stepped back): \
             taking the next generation"
        );
        self.me.identity.generation = generation;
        self.me.incarnation = 0;
        self.saw_previous_run = true;
        self.broadcasts.push(Update::of(&self.me));
        self.changed(Some(previous), self.me.clone());
    }

    /// Records that a member answered: this node is part of a cluster.
    pub(super) fn set_joined(&mut self) {
        if !self.joined {
            self.joined = true;
            self.outputs.push_back(Output::Event(MemberEvent::Joined));
        }
    }

    /// A packet signed with this node's own id: our own (a seed list that
    /// names us through another address), or another process using our id.
    pub(super) fn on_own_id(&mut self, from: &Update, message: &Message) {
        if from.identity.generation == self.me.identity.generation {
            return;
        }
        if matches!(message, Message::Join) {
            // We are alive and hold this id: the newcomer is refused.
            let holder = self.me.identity.addr.clone();
            self.send_raw(
                from.identity.addr.clone(),
                Message::JoinRefused { holder },
                Vec::new(),
            );
        } else {
            self.report_conflict(&from.identity);
        }
    }

    /// Reports another process using this node's id, once per run of it
    /// (and at most 64 runs, so a flood cannot grow the set).
    pub(super) fn report_conflict(&mut self, other: &Identity) {
        let key = (other.generation.get(), other.addr.clone());
        if self.conflicts_seen.len() < 64 && self.conflicts_seen.insert(key) {
            tracing::error!(
                id = %self.me.identity.id,
                other_addr = %other.addr,
                "another node uses this node's id"
            );
            self.outputs
                .push_back(Output::Event(MemberEvent::IdConflict {
                    other: other.clone(),
                }));
        }
    }

    /// A join from an id a live member already holds under another
    /// generation. Returns whether the join is held back until the holder
    /// has been probed. Either generation may be the restart: a later one
    /// normally, an earlier one when the restarted node's wall clock
    /// stepped back (it then takes a later one from the table it gets).
    pub(super) fn check_join_conflict(&mut self, now: Duration, joiner: &Update) -> bool {
        let id = joiner.identity.id;
        if self.id_checks.values().any(|c| c.joiner.identity.id == id) {
            return true;
        }
        let Some(entry) = self.members.get(&id) else {
            return false;
        };
        let holder = &entry.member;
        if holder.identity.generation == joiner.identity.generation
            || !holder.liveness.is_reachable()
            || matches!(holder.ring, RingState::Left | RingState::Removed)
        {
            return false;
        }
        if self.id_checks.len() >= MAX_FORWARDS {
            return true;
        }
        // A restart, unless the holder still answers.
        let holder = holder.identity.clone();
        let seq = self.next_seq();
        let to = holder.addr.clone();
        self.id_checks.insert(
            seq,
            IdCheck {
                joiner: joiner.clone(),
                holder,
                deadline: now + self.scaled(self.config.probe_timeout) * 2,
            },
        );
        self.send(to, Message::Ping { seq, target: id });
        true
    }

    /// An answer to the id check `seq`, from the run `answered` of the
    /// id: the holder itself means it is alive and the joiner is refused;
    /// another run (the joiner, restarted at the holder's address) means
    /// the holder is gone.
    pub(super) fn on_id_check_ack(&mut self, now: Duration, seq: u64, answered: Generation) {
        if let Some(check) = self.id_checks.remove(&seq) {
            let alive = answered == check.holder.generation
                && self
                    .members
                    .get(&check.holder.id)
                    .is_some_and(|e| e.member.liveness.is_reachable());
            if alive {
                // Any sender can ask to join under a live member's id,
                // again and again.
                static LIMIT: LogLimit = LogLimit::new(log_limit::EVERY);
                if let Some(suppressed) = LIMIT.allow() {
                    tracing::warn!(
                        id = %check.holder.id,
                        holder = %check.holder.addr,
                        joiner = %check.joiner.identity.addr,
                        suppressed,
                        "join refused: a live member already uses this id"
                    );
                }
                self.send_raw(
                    check.joiner.identity.addr.clone(),
                    Message::JoinRefused {
                        holder: check.holder.addr,
                    },
                    Vec::new(),
                );
            } else {
                self.accept_join(now, check.joiner);
            }
        }
    }

    /// Lets a joiner in: it enters the table and gets this node's.
    fn accept_join(&mut self, now: Duration, joiner: Update) {
        let addr = joiner.identity.addr.clone();
        self.merge(now, joiner);
        self.send_table(addr, false, true);
    }

    /// Id checks that went unanswered: each joiner is its holder's restart.
    pub(super) fn id_check_timers(&mut self, now: Duration) {
        for seq in expired(&self.id_checks, now, |c| c.deadline) {
            if let Some(check) = self.id_checks.remove(&seq) {
                // The holder did not answer: the joiner is its restart.
                self.accept_join(now, check.joiner);
            }
        }
    }
}
