//! The transit network: stops, routes, networks, metro distances and bus sections.
//!
//! Names from the data are interned into small indices ([`StopIdx`],
//! [`RouteIdx`], [`NetworkIdx`]) so the fare hot path compares integers and
//! never touches strings. Metro distances between every pair of stations are
//! precomputed (Floyd–Warshall over the adjacent-station links) when the data
//! is loaded.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::data::{FareData, Sink, parse_km};
use crate::error::LoadError;

/// The columns of `routes.txt` the loader knows (the rest of the GTFS
/// `routes.txt` columns are read by other consumers, never reported).
const ROUTE_COLUMNS: &[&str] = &[
    "route_id",
    "agency_id",
    "route_short_name",
    "route_long_name",
    "route_desc",
    "route_type",
    "route_url",
    "route_color",
    "route_text_color",
    "route_sort_order",
    "continuous_pickup",
    "continuous_drop_off",
    "network_id",
    "cemv_support",
];

/// The columns of `stops.txt` in the GTFS reference.
const STOP_COLUMNS: &[&str] = &[
    "stop_id",
    "stop_code",
    "stop_name",
    "tts_stop_name",
    "stop_desc",
    "stop_lat",
    "stop_lon",
    "zone_id",
    "stop_url",
    "location_type",
    "parent_station",
    "stop_timezone",
    "wheelchair_boarding",
    "level_id",
    "platform_code",
    "stop_access",
];

macro_rules! index_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The index as a `usize`.
            #[inline]
            pub fn get(self) -> usize {
                self.0 as usize
            }
        }
    };
}

index_type!(
    /// A stop or station, by its position in the loaded data.
    StopIdx
);
index_type!(
    /// A route (metro line, bus route, water bus line), by position.
    RouteIdx
);
index_type!(
    /// A fare network, by position.
    NetworkIdx
);

/// One stop or station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// The `stop_id`.
    pub id: String,
    /// The name shown to riders.
    pub name: String,
    /// The operator of the first route serving the stop, for revenue of gated metro taps.
    pub operator: Option<String>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The `route_id`.
    pub id: String,
    /// The short name shown to riders.
    pub name: String,
    /// The operator (`agency_id`), to which its fares are credited.
    pub operator: String,
    /// The network of the route.
    pub network: NetworkIdx,
}

/// One fare network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The `network_id`.
    pub id: String,
    /// The name shown to riders.
    pub name: String,
}

/// Stops, routes, networks and distances, loaded from data.
#[derive(Debug, Clone)]
pub struct TransitNetwork {
    pub(crate) stops: Vec<Stop>,
    pub(crate) stop_index: HashMap<String, StopIdx>,
    pub(crate) routes: Vec<Route>,
    pub(crate) route_index: HashMap<String, RouteIdx>,
    pub(crate) networks: Vec<Network>,
    pub(crate) network_index: HashMap<String, NetworkIdx>,
    /// For each stop, its position among metro stations (`u32::MAX` when none).
    metro_pos: Vec<u32>,
    metro_count: usize,
    /// Shortest metro distances in metres, `metro_count²` entries, `u32::MAX` when unreachable.
    metro_dist: Vec<u32>,
    /// Whether any link used is marked as a sample distance.
    pub(crate) sample_distances: bool,
    /// Per route, per stop: the fare section of the stop on that route.
    sections: HashMap<(RouteIdx, StopIdx), u16>,
    /// Per stop: its parent station (`stops.parent_station`), if any.
    parent: Vec<Option<StopIdx>>,
}

impl TransitNetwork {
    /// Loads the network files of a data set; the first problem is an error.
    pub fn load(data: &FareData) -> Result<Self, LoadError> {
        Self::load_with(data, &mut Sink::strict())
    }

    /// Loads the network files, reporting problems to `sink` (which decides
    /// whether a bad row stops the load or is left out).
    ///
    /// Networks come from `networks.txt` + `route_networks.txt` or from
    /// `routes.network_id` (the spec forbids both at once). A route in no
    /// network is put in a network with the empty id, which only fare leg
    /// rules with an empty `network_id` match.
    pub(crate) fn load_with(data: &FareData, sink: &mut Sink) -> Result<Self, LoadError> {
        let routes_table = data.table_raw("routes.txt", true)?;
        sink.table(&routes_table, ROUTE_COLUMNS)?;
        let by_route_column = routes_table.has_column("network_id");
        let t = data.table_raw("networks.txt", false)?;
        sink.table(&t, &["network_id", "network_name"])?;
        let rn = data.table_raw("route_networks.txt", false)?;
        sink.table(&rn, &["network_id", "route_id"])?;
        if by_route_column && (!t.rows.is_empty() || !rn.rows.is_empty()) {
            sink.problem(LoadError::new(
                "routes.txt",
                1,
                "network_id",
                "routes.network_id and networks.txt / route_networks.txt are both present: the spec allows one or the other",
            ))?;
        }
        let mut networks = Vec::new();
        let mut network_index = HashMap::new();
        for row in &t.rows {
            let r = (|| {
                let id = t.req(row, "network_id")?.to_owned();
                if network_index.contains_key(&id) {
                    return Err(t.err(row, "network_id", format!("duplicate network {id:?}")));
                }
                Ok(id)
            })();
            let Some(id) = sink.row(r)? else { continue };
            let name = t.opt(row, "network_name").unwrap_or(&id).to_owned();
            network_index.insert(id.clone(), NetworkIdx(networks.len() as u32));
            networks.push(Network { id, name });
        }

        let mut route_network = HashMap::new();
        for row in &rn.rows {
            let r = (|| {
                let route = rn.req(row, "route_id")?.to_owned();
                let network = rn.lookup_req(row, "network_id", &network_index)?;
                if route_network.contains_key(&route) {
                    return Err(rn.err(
                        row,
                        "route_id",
                        format!("route {route:?} is in two networks"),
                    ));
                }
                Ok((route, network))
            })();
            if let Some((route, network)) = sink.row(r)? {
                route_network.insert(route, network);
            }
        }

        let t = routes_table;
        let mut routes = Vec::new();
        let mut route_index = HashMap::new();
        let mut no_network = None;
        for row in &t.rows {
            let r = (|| {
                let id = t.req(row, "route_id")?.to_owned();
                if route_index.contains_key(&id) {
                    return Err(t.err(row, "route_id", format!("duplicate route {id:?}")));
                }
                Ok(id)
            })();
            let Some(id) = sink.row(r)? else { continue };
            let named = if by_route_column {
                t.opt(row, "network_id").map(|n| {
                    let next = NetworkIdx(networks.len() as u32);
                    *network_index.entry(n.to_owned()).or_insert_with(|| {
                        networks.push(Network {
                            id: n.to_owned(),
                            name: n.to_owned(),
                        });
                        next
                    })
                })
            } else {
                route_network.get(&id).copied()
            };
            let network = match named {
                Some(n) => n,
                None => *no_network.get_or_insert_with(|| {
                    networks.push(Network {
                        id: String::new(),
                        name: "(no network)".to_owned(),
                    });
                    NetworkIdx(networks.len() as u32 - 1)
                }),
            };
            let operator = t.opt(row, "agency_id").unwrap_or("default").to_owned();
            let name = t
                .opt(row, "route_short_name")
                .or_else(|| t.opt(row, "route_long_name"))
                .unwrap_or(&id)
                .to_owned();
            let idx = RouteIdx(routes.len() as u32);
            route_index.insert(id.clone(), idx);
            routes.push(Route {
                id,
                name,
                operator,
                network,
            });
        }
        for (route, _) in route_network
            .iter()
            .filter(|(r, _)| !route_index.contains_key(*r))
        {
            sink.warn(
                "foreign_key_violation",
                LoadError::new(
                    "route_networks.txt",
                    0,
                    "route_id",
                    format!("route {route:?} is not in routes.txt"),
                ),
            );
        }

        let t = data.table_raw("stops.txt", true)?;
        sink.table(&t, STOP_COLUMNS)?;
        let mut stops = Vec::new();
        let mut stop_index = HashMap::new();
        for row in &t.rows {
            let r = (|| {
                let id = t.req(row, "stop_id")?.to_owned();
                if stop_index.contains_key(&id) {
                    return Err(t.err(row, "stop_id", format!("duplicate stop {id:?}")));
                }
                Ok(id)
            })();
            let Some(id) = sink.row(r)? else { continue };
            let name = t.opt(row, "stop_name").unwrap_or(&id).to_owned();
            stop_index.insert(id.clone(), StopIdx(stops.len() as u32));
            stops.push(Stop {
                id,
                name,
                operator: None,
            });
        }
        // Parent stations, once every stop is known.
        let mut parent = vec![None; stops.len()];
        for row in &t.rows {
            let (Some(id), Some(p)) = (t.opt(row, "stop_id"), t.opt(row, "parent_station")) else {
                continue;
            };
            let Some(child) = stop_index.get(id).copied() else {
                continue;
            };
            match stop_index.get(p) {
                Some(station) if *station != child => parent[child.get()] = Some(*station),
                _ => sink.problem(t.err(
                    row,
                    "parent_station",
                    format!("unknown parent station {p:?}"),
                ))?,
            }
        }

        // Metro links: adjacent stations and their distance.
        let t = data.table_raw("citycard_metro_links.txt", false)?;
        sink.table(
            &t,
            &[
                "route_id",
                "from_stop_id",
                "to_stop_id",
                "distance_km",
                "is_sample",
            ],
        )?;
        let mut metro_pos = vec![u32::MAX; stops.len()];
        let mut metro_count = 0usize;
        let mut links = Vec::new();
        let mut sample_distances = false;
        for row in &t.rows {
            let r = (|| {
                let route = t.lookup_req(row, "route_id", &route_index)?;
                let from = t.lookup_req(row, "from_stop_id", &stop_index)?;
                let to = t.lookup_req(row, "to_stop_id", &stop_index)?;
                let km = t.req(row, "distance_km")?;
                let metres = parse_km(km).filter(|m| *m > 0).ok_or_else(|| {
                    t.err(
                        row,
                        "distance_km",
                        format!("{km:?} is not a positive distance in km with at most 3 decimals"),
                    )
                })?;
                Ok((route, from, to, metres))
            })();
            let Some((route, from, to, metres)) = sink.row(r)? else {
                continue;
            };
            if t.opt(row, "is_sample") == Some("1") {
                sample_distances = true;
            }
            for s in [from, to] {
                if metro_pos[s.get()] == u32::MAX {
                    metro_pos[s.get()] = metro_count as u32;
                    metro_count += 1;
                }
                if stops[s.get()].operator.is_none() {
                    stops[s.get()].operator = Some(routes[route.get()].operator.clone());
                }
            }
            links.push((
                metro_pos[from.get()] as usize,
                metro_pos[to.get()] as usize,
                metres,
            ));
        }
        let n = metro_count;
        let mut dist = vec![u32::MAX; n * n];
        for i in 0..n {
            dist[i * n + i] = 0;
        }
        for (a, b, m) in links {
            for (x, y) in [(a, b), (b, a)] {
                let slot = &mut dist[x * n + y];
                *slot = (*slot).min(m);
            }
        }
        for k in 0..n {
            for i in 0..n {
                let ik = dist[i * n + k];
                if ik == u32::MAX {
                    continue;
                }
                for j in 0..n {
                    let kj = dist[k * n + j];
                    if kj == u32::MAX {
                        continue;
                    }
                    let via = ik.saturating_add(kj);
                    if via < dist[i * n + j] {
                        dist[i * n + j] = via;
                    }
                }
            }
        }

        // Bus fare sections.
        let t = data.table_raw("citycard_route_sections.txt", false)?;
        sink.table(&t, &["route_id", "stop_id", "stop_sequence", "section"])?;
        let mut sections = HashMap::new();
        for row in &t.rows {
            let r = (|| {
                let route = t.lookup_req(row, "route_id", &route_index)?;
                let stop = t.lookup_req(row, "stop_id", &stop_index)?;
                let section: u16 = t.parse_req(row, "section")?;
                if section == 0 {
                    return Err(t.err(row, "section", "sections are numbered from 1"));
                }
                Ok((route, stop, section))
            })();
            let Some((route, stop, section)) = sink.row(r)? else {
                continue;
            };
            sections.insert((route, stop), section);
            if stops[stop.get()].operator.is_none() {
                stops[stop.get()].operator = Some(routes[route.get()].operator.clone());
            }
        }

        Ok(Self {
            stops,
            stop_index,
            routes,
            route_index,
            networks,
            network_index,
            metro_pos,
            metro_count: n,
            metro_dist: dist,
            sample_distances,
            sections,
            parent,
        })
    }

    /// A stop's parent station, if it has one.
    #[inline]
    pub fn parent_station(&self, stop: StopIdx) -> Option<StopIdx> {
        self.parent.get(stop.get()).copied().flatten()
    }

    /// A stop's station: its parent station, or the stop itself.
    #[inline]
    pub fn station_of(&self, stop: StopIdx) -> StopIdx {
        self.parent_station(stop).unwrap_or(stop)
    }

    /// Every network, in data order (a route in no network is in the one with the empty id).
    pub fn networks(&self) -> &[Network] {
        &self.networks
    }

    /// The index of a stop id.
    pub fn stop(&self, id: &str) -> Option<StopIdx> {
        self.stop_index.get(id).copied()
    }

    /// The index of a route id.
    pub fn route(&self, id: &str) -> Option<RouteIdx> {
        self.route_index.get(id).copied()
    }

    /// The index of a network id.
    pub fn network(&self, id: &str) -> Option<NetworkIdx> {
        self.network_index.get(id).copied()
    }

    /// A stop's details.
    pub fn stop_info(&self, stop: StopIdx) -> Option<&Stop> {
        self.stops.get(stop.get())
    }

    /// A route's details.
    pub fn route_info(&self, route: RouteIdx) -> Option<&Route> {
        self.routes.get(route.get())
    }

    /// A network's details.
    pub fn network_info(&self, network: NetworkIdx) -> Option<&Network> {
        self.networks.get(network.get())
    }

    /// Every stop, in data order.
    pub fn stops(&self) -> &[Stop] {
        &self.stops
    }

    /// Every route, in data order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// True when the metro distances include sample (not surveyed) values.
    pub fn has_sample_distances(&self) -> bool {
        self.sample_distances
    }

    /// How many metro stations have distances.
    pub fn metro_station_count(&self) -> usize {
        self.metro_count
    }

    /// The shortest metro distance in metres between two stations, if both are metro stations and connected.
    #[inline]
    pub fn metro_distance(&self, from: StopIdx, to: StopIdx) -> Option<u32> {
        let a = *self.metro_pos.get(from.get())? as usize;
        let b = *self.metro_pos.get(to.get())? as usize;
        if a >= self.metro_count || b >= self.metro_count {
            return None;
        }
        self.metro_dist
            .get(a * self.metro_count + b)
            .copied()
            .filter(|d| *d != u32::MAX)
    }

    /// The longest shortest-path metro distance in metres from a station to any station it reaches
    /// (what its highest single fare is measured on).
    pub fn farthest_metro_distance(&self, from: StopIdx) -> Option<u32> {
        let a = *self.metro_pos.get(from.get())? as usize;
        if a >= self.metro_count {
            return None;
        }
        self.metro_dist
            .get(a * self.metro_count..(a + 1) * self.metro_count)?
            .iter()
            .copied()
            .filter(|d| *d != u32::MAX)
            .max()
    }

    /// The fare section of a stop on a sectioned route.
    #[inline]
    pub fn section(&self, route: RouteIdx, stop: StopIdx) -> Option<u16> {
        self.sections.get(&(route, stop)).copied()
    }

    /// Whether a route has fare sections.
    pub fn is_sectioned(&self, route: RouteIdx) -> bool {
        self.sections.keys().any(|(r, _)| *r == route)
    }

    /// How many sections a ride between two stops of a sectioned route covers (both ends count).
    #[inline]
    pub fn sections_ridden(&self, route: RouteIdx, from: StopIdx, to: StopIdx) -> Option<u16> {
        let a = self.section(route, from)?;
        let b = self.section(route, to)?;
        Some(a.abs_diff(b) + 1)
    }

    /// The operator credited for a stop (gated stations) or route.
    pub fn operator_of(&self, route: Option<RouteIdx>, stop: StopIdx) -> &str {
        route
            .and_then(|r| self.routes.get(r.get()))
            .map(|r| r.operator.as_str())
            .or_else(|| {
                self.stops
                    .get(stop.get())
                    .and_then(|s| s.operator.as_deref())
            })
            .unwrap_or("unknown")
    }
}
