//! Topological order over object dependencies, with a stable tie-break.
//!
//! Among the objects whose dependencies are all satisfied, the next one is the smallest by
//! (section, kind, schema, name, oid), so the same database always gives the same script and
//! pre-data always precedes post-data. A dependency cycle (which PostgreSQL allows in a few
//! corners, e.g. through function bodies) is broken by emitting the smallest remaining object
//! and noting it, rather than failing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::object::{Object, ObjectKind, Section};

type SortKey<'a> = (Section, ObjectKind, &'a str, &'a str, u32, usize);

fn key(objects: &[Object], i: usize) -> SortKey<'_> {
    let o = &objects[i];
    (
        o.section,
        o.kind,
        o.schema.as_deref().unwrap_or(""),
        o.name.as_str(),
        o.oid,
        i,
    )
}

/// The emission order: indexes into `objects`. The second value lists the objects emitted
/// before some of their dependencies because of a cycle.
///
/// The tie-break keys are compared once, in one sort that gives each object its rank; the
/// ready set is then a heap of ranks (integer compares), and a cycle is broken by taking the
/// first object in rank order not yet emitted. On 100,000 tables (half a million objects)
/// this is what keeps ordering from dominating the run.
pub fn order(objects: &[Object]) -> (Vec<usize>, Vec<usize>) {
    let n = objects.len();
    let mut by_rank: Vec<usize> = (0..n).collect();
    by_rank.sort_unstable_by(|&a, &b| key(objects, a).cmp(&key(objects, b)));
    let mut rank = vec![0usize; n];
    for (r, &i) in by_rank.iter().enumerate() {
        rank[i] = r;
    }
    let mut waiting = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, o) in objects.iter().enumerate() {
        for &d in &o.deps {
            if d < n && d != i {
                waiting[i] += 1;
                dependents[d].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = waiting
        .iter()
        .enumerate()
        .filter(|(_, &w)| w == 0)
        .map(|(i, _)| Reverse(rank[i]))
        .collect();
    let mut done = vec![false; n];
    // Every object before this rank is emitted: where a cycle is broken next.
    let mut first_pending = 0;
    let mut out = Vec::with_capacity(n);
    let mut forced = Vec::new();
    while out.len() < n {
        let i = match ready.pop() {
            Some(Reverse(r)) => by_rank[r],
            // Nothing is ready, so every object not yet emitted waits for another: a cycle.
            None => {
                while first_pending < n && done[by_rank[first_pending]] {
                    first_pending += 1;
                }
                let Some(&i) = by_rank.get(first_pending) else {
                    break;
                };
                forced.push(i);
                i
            }
        };
        if done[i] {
            continue;
        }
        done[i] = true;
        out.push(i);
        for &j in &dependents[i] {
            if done[j] {
                continue;
            }
            waiting[j] = waiting[j].saturating_sub(1);
            if waiting[j] == 0 {
                ready.push(Reverse(rank[j]));
            }
        }
    }
    (out, forced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::object::Item;

    fn obj(kind: ObjectKind, name: &str, deps: Vec<usize>) -> Object {
        Object {
            kind,
            schema: Some("public".into()),
            name: name.into(),
            owner: None,
            oid: 0,
            deps,
            section: if kind >= ObjectKind::Index {
                Section::PostData
            } else {
                Section::PreData
            },
            item: Item::Schema(0),
        }
    }

    #[test]
    fn dependencies_beat_kind_priority() {
        // A function returning a table's row type must follow the table.
        let objs = vec![
            obj(ObjectKind::Function, "f", vec![1]),
            obj(ObjectKind::Table, "t", vec![]),
            obj(ObjectKind::Index, "i", vec![1]),
            obj(ObjectKind::Table, "a", vec![]),
        ];
        let (o, forced) = order(&objs);
        assert_eq!(o, vec![3, 1, 0, 2]);
        assert!(forced.is_empty());
    }

    #[test]
    fn cycles_are_broken_not_fatal() {
        let objs = vec![
            obj(ObjectKind::View, "a", vec![1]),
            obj(ObjectKind::View, "b", vec![0]),
        ];
        let (o, forced) = order(&objs);
        assert_eq!(o, vec![0, 1]);
        assert_eq!(forced, vec![0]);
    }
}
