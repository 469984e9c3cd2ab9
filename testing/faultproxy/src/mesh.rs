//! A link per ordered pair of nodes, and partitions over them.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Fault, Link, LinkStats};

/// One [`Link`] per ordered pair of distinct nodes: node `from` reaches node `to` by dialing
/// [`Mesh::addr`]`(from, to)`, which forwards to `to`'s real listen address.
///
/// Because a connection belongs to the link of the node that dialed it, cutting `from → to`
/// silences the connections `from` opened to `to` (requests and their responses), while `to`
/// still reaches `from` over its own connections — an asymmetric partition.
///
/// # Examples
/// ```
/// use std::collections::BTreeMap;
/// use cell_faultproxy::{Fault, Mesh};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// // Three nodes' real listen addresses (nothing needs to listen there yet).
/// let nodes: BTreeMap<u64, std::net::SocketAddr> = (1..=3)
///     .map(|id| (id, format!("127.0.0.1:{}", 7000 + id).parse().unwrap()))
///     .collect();
/// let mesh = Mesh::start(&nodes).await?;
///
/// // Node 1's peer addresses, to put in its configuration.
/// let peers = mesh.dial_map(1);
/// assert_eq!(peers[&1], nodes[&1]); // itself: no proxy
/// assert_eq!(peers[&2], mesh.addr(1, 2).unwrap());
/// assert_ne!(peers[&2], nodes[&2]);
///
/// mesh.partition(&[&[1], &[2, 3]]);
/// assert_eq!(mesh.link(1, 2).unwrap().fault(), Fault::Blackhole);
/// assert_eq!(mesh.link(3, 1).unwrap().fault(), Fault::Blackhole);
/// assert_eq!(mesh.link(2, 3).unwrap().fault(), Fault::Pass);
/// mesh.heal();
/// assert_eq!(mesh.link(1, 2).unwrap().fault(), Fault::Pass);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Mesh {
    nodes: BTreeMap<u64, SocketAddr>,
    links: BTreeMap<(u64, u64), Link>,
}

impl Mesh {
    /// Starts a link for every ordered pair of the given nodes (id → real listen address),
    /// with loss seed 0. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// If a listener cannot be bound.
    pub async fn start(nodes: &BTreeMap<u64, SocketAddr>) -> io::Result<Mesh> {
        Mesh::start_seeded(nodes, 0).await
    }

    /// Like [`Mesh::start`], with a seed for the links' loss decisions (each link's seed is
    /// derived from it and the pair).
    ///
    /// # Errors
    /// If a listener cannot be bound.
    pub async fn start_seeded(nodes: &BTreeMap<u64, SocketAddr>, seed: u64) -> io::Result<Mesh> {
        let mut links = BTreeMap::new();
        for &from in nodes.keys() {
            for (&to, &target) in nodes {
                if from != to {
                    let pair_seed = seed
                        ^ from.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ to.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
                    let link = Link::builder(target).seed(pair_seed).start().await?;
                    links.insert((from, to), link);
                }
            }
        }
        Ok(Mesh {
            nodes: nodes.clone(),
            links,
        })
    }

    /// The nodes, by id, with their real listen addresses.
    pub fn nodes(&self) -> &BTreeMap<u64, SocketAddr> {
        &self.nodes
    }

    /// The link `from → to`, if both are distinct nodes of the mesh.
    pub fn link(&self, from: u64, to: u64) -> Option<&Link> {
        self.links.get(&(from, to))
    }

    /// The address node `from` must dial to reach node `to`: the link's address, or `to`'s own
    /// address if `from == to`. `None` if either is not a node of the mesh.
    pub fn addr(&self, from: u64, to: u64) -> Option<SocketAddr> {
        if from == to {
            return self.nodes.get(&to).copied();
        }
        self.link(from, to).map(Link::addr)
    }

    /// Every node's address as node `from` must dial it ([`Mesh::addr`]), itself included
    /// (its real address). Empty if `from` is not a node of the mesh.
    pub fn dial_map(&self, from: u64) -> BTreeMap<u64, SocketAddr> {
        if !self.nodes.contains_key(&from) {
            return BTreeMap::new();
        }
        self.nodes
            .keys()
            .filter_map(|&to| Some((to, self.addr(from, to)?)))
            .collect()
    }

    /// Blackholes the link `from → to` only: what `from` sends over its connections to `to`
    /// vanishes, and so do their responses; `to` still reaches `from`. Undone by
    /// [`Mesh::heal`] (or [`Mesh::partition`]).
    ///
    /// # Panics
    /// If `from` and `to` are not distinct nodes of the mesh (a mistake in the test).
    pub fn cut(&self, from: u64, to: u64) {
        match self.link(from, to) {
            Some(link) => link.set_fault(Fault::Blackhole),
            None => panic!("no link {from} -> {to} in this mesh"),
        }
    }

    /// Blackholes every link to and from `node`.
    ///
    /// # Panics
    /// If `node` is not a node of the mesh.
    pub fn isolate(&self, node: u64) {
        assert!(
            self.nodes.contains_key(&node),
            "no node {node} in this mesh"
        );
        for (&(from, to), link) in &self.links {
            if from == node || to == node {
                link.set_fault(Fault::Blackhole);
            }
        }
    }

    /// Sets every link's fault from a partition into groups: links within a group pass, links
    /// between groups are blackholed. A node in no group is a group of its own. Replaces
    /// earlier cuts (a link that was cut and now passes closes its old connections).
    ///
    /// # Panics
    /// If a group names a node not in the mesh, or a node is in two groups.
    pub fn partition(&self, groups: &[&[u64]]) {
        let mut group_of = BTreeMap::new();
        for (g, group) in groups.iter().enumerate() {
            for node in *group {
                assert!(self.nodes.contains_key(node), "no node {node} in this mesh");
                let earlier = group_of.insert(*node, g);
                assert!(earlier.is_none(), "node {node} is in two groups");
            }
        }
        for (&(from, to), link) in &self.links {
            let together = matches!(
                (group_of.get(&from), group_of.get(&to)),
                (Some(a), Some(b)) if a == b
            );
            let fault = if together {
                Fault::Pass
            } else {
                Fault::Blackhole
            };
            if link.fault() != fault {
                link.set_fault(fault);
            }
        }
    }

    /// Lets every link pass again (delay and loss are kept: see [`Mesh::set_delay`] and
    /// [`Mesh::set_loss`]). Connections that lived through a blackhole or reset are closed.
    pub fn heal(&self) {
        for link in self.links.values() {
            if link.fault() != Fault::Pass {
                link.set_fault(Fault::Pass);
            }
        }
    }

    /// Sets the delay of every link ([`Link::set_delay`]).
    pub fn set_delay(&self, delay: Duration) {
        for link in self.links.values() {
            link.set_delay(delay);
        }
    }

    /// Sets the loss probability of every link ([`Link::set_loss`]).
    pub fn set_loss(&self, probability: f64) {
        for link in self.links.values() {
            link.set_loss(probability);
        }
    }

    /// Every link's counters, by `(from, to)`.
    pub fn stats(&self) -> BTreeMap<(u64, u64), LinkStats> {
        self.links
            .iter()
            .map(|(&pair, link)| (pair, link.stats()))
            .collect()
    }
}
