//! Dependency cycles that pg_dump knows how to break, broken the same way.
//!
//! - A valid CHECK whose expression uses something that itself needs the table (a function
//!   taking the table's row type) cannot sit inside CREATE TABLE: it becomes a separate
//!   ALTER TABLE … ADD CONSTRAINT after both.
//! - A view inside a cycle (it selects from a function returning its own row type) is first
//!   created as a stub with the right columns, and replaced with its real definition later.
//!
//! Whatever cycle remains is broken by [`super::order`], which reports it.

use std::collections::HashMap;

use super::build::{Key, Model, PG_TYPE};
use super::object::{Item, Object, ObjectKind, Section};

impl Model {
    /// Folds each valid CHECK into its table (the table inherits the check's dependencies),
    /// unless one of those dependencies itself needs the table: then the check stays a
    /// separate ALTER TABLE … ADD CONSTRAINT after both, as pg_dump does.
    pub(super) fn merge_checks(&mut self) {
        for (check, table) in std::mem::take(&mut self.inline_checks) {
            let others: Vec<usize> = self.objects[check]
                .deps
                .iter()
                .copied()
                .filter(|&d| d != table)
                .collect();
            if !others.is_empty() && reaches(&self.objects, &others, table) {
                if let Item::Constraint(i) = self.objects[check].item {
                    self.separate_checks.insert(self.catalog.constraints[i].oid);
                }
                continue;
            }
            self.objects[table].deps.extend(others);
            self.objects[check].deps = vec![table];
        }
        for o in &mut self.objects {
            o.deps.sort_unstable();
            o.deps.dedup();
        }
    }

    /// pg_dump's answer to a view caught in a dependency cycle (say, a view selecting from a
    /// function that returns the view's row type): create a stub view with the same columns
    /// first, let the rest of the cycle use it, and replace it with the real definition.
    pub(super) fn stub_views_in_cycles(&mut self, map: &HashMap<Key, usize>) {
        for scc in strongly_connected(&self.objects) {
            if scc.len() < 2 {
                continue;
            }
            for &v in &scc {
                let (ObjectKind::View, Item::Relation(ri)) =
                    (self.objects[v].kind, self.objects[v].item)
                else {
                    continue;
                };
                let r = &self.catalog.relations[ri];
                let mut deps: Vec<usize> = self
                    .catalog
                    .schemas
                    .iter()
                    .find(|s| s.name == r.schema)
                    .and_then(|s| map.get(&("pg_catalog.pg_namespace", s.oid)).copied())
                    .into_iter()
                    .collect();
                if let Some(cols) = self.columns.get(&r.oid) {
                    for c in &self.catalog.columns[cols.clone()] {
                        if let Some(&t) = map.get(&(PG_TYPE, c.type_oid)) {
                            if t != v {
                                deps.push(t);
                            }
                        }
                    }
                }
                let stub = Object {
                    kind: ObjectKind::ViewStub,
                    schema: Some(r.schema.clone()),
                    name: r.name.clone(),
                    owner: None,
                    oid: r.oid,
                    deps,
                    section: Section::PreData,
                    item: Item::ViewStub(ri),
                };
                self.objects.push(stub);
                let s = self.objects.len() - 1;
                for &o in &scc {
                    if o != v {
                        for d in &mut self.objects[o].deps {
                            if *d == v {
                                *d = s;
                            }
                        }
                    }
                }
                self.objects[v].deps.push(s);
                self.stubbed_views.insert(ri);
            }
        }
    }
}

/// Whether `target` is reachable from any of `starts` along dependencies.
fn reaches(objects: &[Object], starts: &[usize], target: usize) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<usize> = starts.to_vec();
    while let Some(o) = todo.pop() {
        if o == target {
            return true;
        }
        if o < objects.len() && seen.insert(o) {
            todo.extend(objects[o].deps.iter().copied());
        }
    }
    false
}

/// Strongly connected components of the dependency graph (iterative Tarjan, so deep
/// dependency chains cannot overflow the stack).
fn strongly_connected(objects: &[Object]) -> Vec<Vec<usize>> {
    let n = objects.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position in its dependency list)
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if let Some(&w) = objects[v].deps.get(*pos) {
                *pos += 1;
                if w >= n {
                    continue;
                }
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut scc = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        scc.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(scc);
                }
            }
        }
    }
    out
}
