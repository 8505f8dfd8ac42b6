package loader

import (
	"errors"
	"fmt"
	"slices"
)

// ErrFilterKinds is returned by SetTargets when the new selection turns a
// kind of filter (pid, port, comm, cgroup, or the cgroup hierarchy) on or
// off: those are fixed when the programs are loaded.
var ErrFilterKinds = errors.New("the kinds of target selection changed (a kind turned on or off, or another cgroup hierarchy); that needs new BPF programs")

// Targets returns the selection the tracer applies now.
func (t *Tracer) Targets() Targets { return t.targets }

// SetTargets changes the selection in place: new values are added to the
// target maps before removed ones are deleted, so a target in both sets
// is never unselected, and connections already traced stay traced until
// they close (their requests are not lost). New connections follow the
// new selection at their accept().
func (t *Tracer) SetTargets(tg Targets) error {
	if err := tg.Validate(); err != nil {
		return err
	}
	old := t.targets
	cg, err := resolveCgroups(tg.Cgroups)
	if err != nil {
		return err
	}
	kinds := func(x Targets) [4]bool {
		return [4]bool{len(x.PIDs) > 0, len(x.Ports) > 0, len(x.Comms) > 0, len(x.Cgroups) > 0}
	}
	if kinds(old) != kinds(tg) || (len(tg.Cgroups) > 0 && cg.v1Subsys != t.cgroupV1) {
		return ErrFilterKinds
	}
	if err := fillTargets(t.coll, tg); err != nil {
		return err
	}
	var errs []error
	del := func(mapName string, key any, what string) {
		if err := t.coll.Maps[mapName].Delete(key); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", what, err))
		}
	}
	for _, pid := range old.PIDs {
		if !slices.Contains(tg.PIDs, pid) {
			del(TracerdMapTargetPids, pid, fmt.Sprintf("pid %d", pid))
		}
	}
	for _, port := range old.Ports {
		if !slices.Contains(tg.Ports, port) {
			del(TracerdMapTargetPorts, port, fmt.Sprintf("port %d", port))
		}
	}
	for _, comm := range old.Comms {
		if !slices.Contains(tg.Comms, comm) {
			del(TracerdMapTargetComms, commKey(comm), fmt.Sprintf("comm %q", comm))
		}
	}
	if oldCg, err := resolveCgroups(old.Cgroups); err == nil {
		for _, id := range oldCg.ids {
			if !slices.Contains(cg.ids, id) {
				del(TracerdMapTargetCgroups, id, fmt.Sprintf("cgroup %d", id))
			}
		}
	}
	t.targets = tg
	t.cgroupV1 = cg.v1Subsys
	return errors.Join(errs...)
}
