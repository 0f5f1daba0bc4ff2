//! linux-6.16's `smp_text_poke_batch_add()` (issue 11): its two checks — vector full
//! (`nr_entries == TEXT_POKE_ARRAY_MAX`) and address order (`!text_poke_addr_ordered(addr)`),
//! each flushing with `smp_text_poke_batch_finish()` — and what happens when a mutant drops one:
//! the 257th entry lands past `text_poke_array.vec` (on `nr_entries`), or the vector is out of
//! order and the handler's `bsearch()` misses entries.

use scenarios::catalogue::scenario;
use scenarios::workload::{SiteOrder, WorkloadKind, WorkloadSpec};
use sim_core::{Mutant, Protocol, Verdict, ViolationKind};

fn batch(sites: u32, order: SiteOrder, rounds: u32) -> WorkloadSpec {
    WorkloadSpec { sites, order, rounds, ..WorkloadSpec::new(WorkloadKind::Batch) }
}

#[test]
fn a_full_vector_is_flushed_and_without_the_check_the_257th_entry_overruns_it() {
    let spec = batch(257, SiteOrder::Ascending, 2);
    let o = scenario(Protocol::Linux616, &[], spec, "pessimistic", 0).run().unwrap();
    assert_eq!(o.verdict, Verdict::Pass, "{:?}", o.violation());
    // 257 requests per round: a full vector of 256, flushed, then one more.
    assert_eq!(o.stats.patch_rounds, 4);
    let o = scenario(Protocol::Linux616, &[Mutant::BatchNoFullCheck], spec, "pessimistic", 0).run().unwrap();
    let v = o.violation().expect("the overrun is reported");
    assert_eq!(v.kind, ViolationKind::PatcherFault, "{v}");
    assert!(v.message.contains("vec[256]") && v.message.contains("nr_entries"), "{v}");
}

#[test]
fn an_out_of_order_request_is_flushed_and_without_the_check_bsearch_misses_entries() {
    let spec = batch(16, SiteOrder::Interleaved, 6);
    for k in 0..20 {
        let o = scenario(Protocol::Linux616, &[], spec, "pessimistic", k).run().unwrap();
        assert_eq!(o.verdict, Verdict::Pass, "seed {k}: {:?}", o.violation());
    }
    let v = (0..20)
        .find_map(|k| {
            let o = scenario(Protocol::Linux616, &[Mutant::BatchNoOrderCheck], spec, "pessimistic", k).run();
            o.unwrap().violations.into_iter().next()
        })
        .expect("an unsorted vector loses a trap");
    assert_eq!(v.kind, ViolationKind::UnclaimedInt3, "{v}");
    // The mutants are 6.16's: older versions sort their callers' vectors.
    assert!(!Mutant::BatchNoOrderCheck.applies_to(Protocol::Linux60));
}
