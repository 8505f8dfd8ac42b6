package loader

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tracerd/tracerd/internal/targets"
)

// Targets returns the selection the tracer applies now.
func (t *Tracer) Targets() targets.Targets { return t.targets }

// SetTargets changes the selection in place, kinds included (a kind
// turned on or off, another cgroup hierarchy): new values are added to
// the target maps, then the kinds switched, then removed values deleted,
// so a target in both sets is never unselected, and connections already
// traced stay traced until they close (their requests are not lost). New
// connections follow the new selection at their accept().
func (t *Tracer) SetTargets(tg targets.Targets) error {
	if err := tg.Validate(); err != nil {
		return err
	}
	old := t.targets
	cg, err := targets.ResolveCgroups(tg.Cgroups)
	if err != nil {
		return err
	}
	if err := putTargets(t.coll, tg, cg); err != nil {
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
	if oldCg, err := targets.ResolveCgroups(old.Cgroups); err == nil {
		for _, id := range oldCg.IDs {
			if !slices.Contains(cg.IDs, id) {
				del(TracerdMapTargetCgroups, id, fmt.Sprintf("cgroup %d", id))
			}
		}
	}
	t.targets = tg
	return errors.Join(errs...)
}
