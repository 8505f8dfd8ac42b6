package live

import (
	"context"
	"fmt"
	"io"

	"github.com/gdamore/tcell/v2"
)

// Update is a new view, or why there is none (Err).
type Update struct {
	View View
	Err  error
}

// RunScreen draws each update from views on the terminal (alternate
// screen) until q, Ctrl-C or Esc, ctx's end, or views closing; a resize
// redraws. The terminal is restored whatever ends it.
func RunScreen(ctx context.Context, source string, views <-chan Update) error {
	s, err := tcell.NewScreen()
	if err != nil {
		return fmt.Errorf("terminal: %w", err)
	}
	if err := s.Init(); err != nil {
		return fmt.Errorf("terminal: %w", err)
	}
	defer s.Fini()
	s.HideCursor()
	last := Update{Err: errWaiting}
	draw := func() {
		s.Clear()
		w, h := s.Size()
		if last.Err != nil {
			s.PutStrStyled(0, 0, cut("tracerd top: "+source+": "+last.Err.Error(), w), styleOf(Alert))
		} else {
			for y, l := range Screen(last.View, source, w, h) {
				s.PutStrStyled(0, y, l.Text, styleOf(l.Kind))
			}
		}
		s.Show()
	}
	draw()
	events, quit := make(chan tcell.Event, 16), make(chan struct{})
	defer close(quit)
	go s.ChannelEvents(events, quit)
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-views:
			if !ok {
				return nil
			}
			last = u
			draw()
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			switch ev := ev.(type) {
			case *tcell.EventResize:
				s.Sync()
				draw()
			case *tcell.EventKey:
				switch {
				case ev.Key() == tcell.KeyCtrlC, ev.Key() == tcell.KeyEscape,
					ev.Key() == tcell.KeyRune && (ev.Rune() == 'q' || ev.Rune() == 'Q'):
					return nil
				case ev.Key() == tcell.KeyCtrlL:
					s.Sync()
					draw()
				}
			}
		}
	}
}

var errWaiting = fmt.Errorf("waiting for the first view")

func styleOf(k Kind) tcell.Style {
	st := tcell.StyleDefault
	switch k {
	case Title:
		return st.Reverse(true)
	case Heading:
		return st.Bold(true)
	case Alert:
		return st.Foreground(tcell.ColorRed)
	}
	return st
}

// RunPlain writes each view from views to w as plain lines (WritePlain)
// until ctx ends or views closes; an update's error is a line too.
func RunPlain(ctx context.Context, w io.Writer, views <-chan Update) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-views:
			if !ok {
				return nil
			}
			if u.Err != nil {
				fmt.Fprintf(w, "tracerd top: %v\n", u.Err)
				continue
			}
			WritePlain(w, u.View)
		}
	}
}
