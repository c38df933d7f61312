package api

import (
	"errors"
	"net/url"
	"reflect"
	"testing"

	"github.com/logpipe/logpipe/livetail/internal/session"
)

func TestParseHistory(t *testing.T) {
	for name, tt := range map[string]struct {
		query string
		want  session.EarlierParams
		param string // the parameter a ParamError names; "" for success
	}{
		"default limit": {query: "job=a&job=b&before=1:5,0:7", want: session.EarlierParams{Jobs: []string{"a", "b"}, Before: []session.Position{{Partition: 0, Offset: 7}, {Partition: 1, Offset: 5}}, Limit: DefaultPageLimit}},
		"limit":         {query: "job=a&before=0:7&limit=1000", want: session.EarlierParams{Jobs: []string{"a"}, Before: []session.Position{{Partition: 0, Offset: 7}}, Limit: 1000}},
		"no before":     {query: "job=a", param: "before"},
		"bare offset":   {query: "job=a&before=7", param: "before"},
		"bad before":    {query: "job=a&before=x:7", param: "before"},
		"limit 0":       {query: "job=a&before=0:7&limit=0", param: "limit"},
		"limit 1001":    {query: "job=a&before=0:7&limit=1001", param: "limit"},
		"limit words":   {query: "job=a&before=0:7&limit=all", param: "limit"},
		"job repeated":  {query: "job=a&job=a&before=0:7", param: "job"},
		"no job":        {query: "before=0:7", param: "job"},
		"bad grep":      {query: "job=a&before=0:7&grep=" + url.QueryEscape("a("), param: "grep"},
	} {
		t.Run(name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseHistory(q)
			if tt.param != "" {
				var pe *session.ParamError
				if !errors.As(err, &pe) || pe.Param != tt.param {
					t.Fatalf("error %v, want one naming %s", err, tt.param)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v (%v), want %+v", got, err, tt.want)
			}
		})
	}
}

// A page's JSON: the entries as the stream has them, the next position,
// and stop always present.
func TestPageJSON(t *testing.T) {
	page := session.Page{Before: []session.Position{{Partition: 2, Offset: 0}, {Partition: 0, Offset: 41}}, More: true}
	got := pageJSON(page)
	if got.Before != "0:41,2:0" || got.Entries == nil || got.Stop != "" || !got.More {
		t.Fatalf("page %+v", got)
	}
}
