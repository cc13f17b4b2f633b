// sarama-probe: drives Sluice with Shopify/sarama (Debian's golang-github-shopify-sarama-dev,
// built in GOPATH mode, offline). Old protocol versions are the point: sarama's default version
// (V0_8_2_0 in 1.22) speaks Produce v0 / Fetch v0 with magic-0 message sets, V0_10_2_0 speaks
// Produce v2 / Fetch v3 with magic-1 sets.
//
// Modes (one JSON summary line on stdout; exit 1 on any mismatch):
//
//	produce   -n N messages "k-<i>" / "v-<i>-<tag>..." to partition 0, in batches
//	consume   read partition 0 from the oldest offset and check offsets 0..N-1, keys, values
//	          (and timestamps when the version carries them)
//	group     the same check through a ConsumerGroup (needs the group coordinator APIs)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

var (
	mode     = flag.String("mode", "", "produce | consume | group")
	brokers  = flag.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	topic    = flag.String("topic", "sarama", "topic")
	n        = flag.Int("n", 1000, "messages")
	codec    = flag.String("codec", "none", "none | gzip | snappy | lz4 | zstd")
	version  = flag.String("version", "default", "Kafka protocol version, or 'default'")
	tag      = flag.String("tag", "t", "value tag, to tell runs apart")
	baseTS   = flag.Int64("base-ts", 1600000000000, "timestamp (ms) of message 0; i-th is +i")
	batch    = flag.Int("batch", 50, "messages per SendMessages call")
	group    = flag.String("group", "sarama-group", "consumer group id")
	timeoutS = flag.Int("timeout", 60, "seconds before giving up")
	checkTS  = flag.Bool("check-ts", true, "check timestamps (when the version carries them)")
)

type summary struct {
	Mode     string   `json:"mode"`
	Version  string   `json:"version"`
	Codec    string   `json:"codec"`
	Count    int      `json:"count"`
	First    int64    `json:"first_offset"`
	Last     int64    `json:"last_offset"`
	Errors   []string `json:"errors"`
	TSChecks int      `json:"timestamp_checks"`
}

func key(i int) string { return fmt.Sprintf("k-%d", i) }

// value varies in length and repeats itself, so codecs have something to do.
func value(i int) string {
	base := fmt.Sprintf("v-%d-%s|", i, *tag)
	return strings.Repeat(base, 1+i%7)
}

func config() (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.ClientID = "sluice-sarama-probe"
	if *version != "default" {
		v, err := sarama.ParseKafkaVersion(*version)
		if err != nil {
			return nil, err
		}
		c.Version = v
	}
	switch *codec {
	case "none":
		c.Producer.Compression = sarama.CompressionNone
	case "gzip":
		c.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		c.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		c.Producer.Compression = sarama.CompressionLZ4
	case "zstd":
		c.Producer.Compression = sarama.CompressionZSTD
	default:
		return nil, fmt.Errorf("unknown codec %q", *codec)
	}
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Retry.Max = 0
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.MaxWaitTime = 200 * time.Millisecond
	return c, nil
}

func produce(c *sarama.Config, s *summary) {
	p, err := sarama.NewSyncProducer(strings.Split(*brokers, ","), c)
	if err != nil {
		s.Errors = append(s.Errors, "producer: "+err.Error())
		return
	}
	defer p.Close()
	s.First = -1
	for start := 0; start < *n; start += *batch {
		var msgs []*sarama.ProducerMessage
		for i := start; i < start+*batch && i < *n; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{
				Topic:     *topic,
				Partition: 0,
				Key:       sarama.StringEncoder(key(i)),
				Value:     sarama.StringEncoder(value(i)),
				Timestamp: time.Unix(0, (*baseTS+int64(i))*int64(time.Millisecond)),
			})
		}
		if err := p.SendMessages(msgs); err != nil {
			s.Errors = append(s.Errors, "send: "+err.Error())
			return
		}
		for _, m := range msgs {
			if s.First < 0 {
				s.First = m.Offset
			}
			s.Last = m.Offset
			s.Count++
		}
	}
}

// check verifies message i of the expected sequence.
func check(s *summary, c *sarama.Config, m *sarama.ConsumerMessage) {
	i := s.Count
	if m.Offset != int64(i) {
		s.Errors = append(s.Errors, fmt.Sprintf("message %d has offset %d", i, m.Offset))
	}
	if string(m.Key) != key(i) || string(m.Value) != value(i) {
		s.Errors = append(s.Errors, fmt.Sprintf("offset %d: key/value differ", m.Offset))
	}
	// Timestamps exist from magic 1 (Kafka 0.10) on; magic 0 consumers get none.
	if *checkTS && c.Version.IsAtLeast(sarama.V0_10_0_0) {
		want := *baseTS + int64(i)
		got := m.Timestamp.UnixNano() / int64(time.Millisecond)
		if got != want {
			s.Errors = append(s.Errors, fmt.Sprintf("offset %d: timestamp %d, want %d", m.Offset, got, want))
		}
		s.TSChecks++
	}
	if s.Count == 0 {
		s.First = m.Offset
	}
	s.Last = m.Offset
	s.Count++
}

func consume(c *sarama.Config, s *summary) {
	cons, err := sarama.NewConsumer(strings.Split(*brokers, ","), c)
	if err != nil {
		s.Errors = append(s.Errors, "consumer: "+err.Error())
		return
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(*topic, 0, sarama.OffsetOldest)
	if err != nil {
		s.Errors = append(s.Errors, "consume partition: "+err.Error())
		return
	}
	defer pc.Close()
	deadline := time.After(time.Duration(*timeoutS) * time.Second)
	for s.Count < *n && len(s.Errors) < 20 {
		select {
		case m := <-pc.Messages():
			check(s, c, m)
		case e := <-pc.Errors():
			s.Errors = append(s.Errors, "partition consumer: "+e.Error())
			return
		case <-deadline:
			s.Errors = append(s.Errors, fmt.Sprintf("timed out after %d of %d messages", s.Count, *n))
			return
		}
	}
}

type handler struct {
	s    *summary
	c    *sarama.Config
	done chan struct{}
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		check(h.s, h.c, m)
		sess.MarkMessage(m, "")
		if h.s.Count >= *n || len(h.s.Errors) >= 20 {
			close(h.done)
			return nil
		}
	}
	return nil
}

func consumeGroup(c *sarama.Config, s *summary) {
	g, err := sarama.NewConsumerGroup(strings.Split(*brokers, ","), *group, c)
	if err != nil {
		s.Errors = append(s.Errors, "consumer group: "+err.Error())
		return
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeoutS)*time.Second)
	defer cancel()
	h := &handler{s: s, c: c, done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{*topic}, h); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case <-h.done:
	case err := <-errc:
		s.Errors = append(s.Errors, "group consume: "+err.Error())
	case <-ctx.Done():
		s.Errors = append(s.Errors, fmt.Sprintf("timed out after %d of %d messages", s.Count, *n))
	}
}

func main() {
	flag.Parse()
	s := &summary{Mode: *mode, Version: *version, Codec: *codec, Errors: []string{}, First: -1, Last: -1}
	c, err := config()
	if err == nil {
		s.Version = c.Version.String()
		err = c.Validate()
	}
	if err != nil {
		s.Errors = append(s.Errors, "config: "+err.Error())
	} else {
		switch *mode {
		case "produce":
			produce(c, s)
		case "consume":
			consume(c, s)
		case "group":
			consumeGroup(c, s)
		default:
			s.Errors = append(s.Errors, "unknown mode "+*mode)
		}
	}
	if s.Errors == nil {
		s.Errors = []string{}
	}
	out, _ := json.Marshal(s)
	fmt.Println(string(out))
	if len(s.Errors) > 0 || s.Count != *n {
		os.Exit(1)
	}
}
