package jepsenlite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// configJSON is config.json: a Config's settings with lower-case keys,
// durations as Go writes them ("30s") and the seed as a string (a
// 64-bit seed is beyond the integers JavaScript, or jq before 1.7, read
// exactly).
type configJSON struct {
	Backend       string       `json:"backend"`
	Workload      string       `json:"workload"`
	Coordinator   string       `json:"coordinator,omitempty"`
	Nemesis       []string     `json:"nemesis"`
	Time          jsonDuration `json:"time"`
	Workers       int          `json:"workers"`
	Clients       int          `json:"clients"`
	Dir           string       `json:"dir"`
	Seed          jsonSeed     `json:"seed"`
	Interval      jsonDuration `json:"interval"`
	Nodes         int          `json:"nodes"`
	Bug           string       `json:"bug"`
	General       bool         `json:"general"`
	Lease         jsonDuration `json:"lease"`
	CheckTimeout  jsonDuration `json:"check_timeout"`
	Rate          float64      `json:"rate"`
	MinOK         int          `json:"min_ok"`
	WatchKeep     int          `json:"watch_keep"`
	RedisTopology string       `json:"redis_topology"`
	RedisWait     int          `json:"redis_wait"`
}

// MarshalJSON writes c as config.json holds it (WorkerCmd and Progress
// are not data, and are left out).
func (c Config) MarshalJSON() ([]byte, error) {
	nem := c.Nemesis
	if nem == nil {
		nem = []string{}
	}
	return json.Marshal(configJSON{
		Backend: c.Backend, Workload: c.Workload, Coordinator: c.Coordinator, Nemesis: nem,
		Time: jsonDuration(c.Time), Workers: c.Workers, Clients: c.Clients, Dir: c.Dir, Seed: jsonSeed(c.Seed),
		Interval: jsonDuration(c.Interval), Nodes: c.Nodes, Bug: c.Bug, General: c.General, Lease: jsonDuration(c.Lease),
		CheckTimeout: jsonDuration(c.CheckTimeout), Rate: c.Rate, MinOK: c.MinOK, WatchKeep: c.WatchKeep,
		RedisTopology: c.RedisTopology, RedisWait: c.RedisWait,
	})
}

// UnmarshalJSON reads config.json, as MarshalJSON writes it or as runs
// before it wrote it (Go's field names, durations in nanoseconds).
func (c *Config) UnmarshalJSON(b []byte) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	if _, old := keys["Workload"]; old {
		type plain Config // the older form: no methods, Go's names
		var p plain
		if err := json.Unmarshal(b, &p); err != nil {
			return err
		}
		*c = Config(p)
		return nil
	}
	var j configJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*c = Config{Backend: j.Backend, Workload: j.Workload, Coordinator: j.Coordinator, Nemesis: j.Nemesis,
		Time: time.Duration(j.Time), Workers: j.Workers, Clients: j.Clients, Dir: j.Dir, Seed: uint64(j.Seed),
		Interval: time.Duration(j.Interval), Nodes: j.Nodes, Bug: j.Bug, General: j.General, Lease: time.Duration(j.Lease),
		CheckTimeout: time.Duration(j.CheckTimeout), Rate: j.Rate, MinOK: j.MinOK, WatchKeep: j.WatchKeep,
		RedisTopology: j.RedisTopology, RedisWait: j.RedisWait}
	return nil
}

// jsonDuration is a duration written as Go writes it ("1m30s"); a number
// (nanoseconds) is read too.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("a duration: want a string such as \"30s\", got %s", b)
		}
		*d = jsonDuration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = jsonDuration(v)
	return nil
}

// jsonSeed is a uint64 written as a decimal string; a number is read too.
type jsonSeed uint64

func (s jsonSeed) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatUint(uint64(s), 10))
}

func (s *jsonSeed) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		var n uint64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("the seed: want a decimal string, got %s", b)
		}
		*s = jsonSeed(n)
		return nil
	}
	n, err := strconv.ParseUint(str, 10, 64)
	if err != nil {
		return fmt.Errorf("the seed: %w", err)
	}
	*s = jsonSeed(n)
	return nil
}
