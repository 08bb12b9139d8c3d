package reader;

import io.cloudevents.CloudEvent;
import io.cloudevents.kafka.CloudEventDeserializer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads every committed record of the topics named on the command line from the beginning and
 * deserializes each with the CloudEvents Kafka binding. Prints one JSON line: the records read
 * per topic, how many were CloudEvents, and the first failure's message.
 * Usage: Reader BOOTSTRAP TOPIC...
 */
public final class Reader {
  public static void main(String[] args) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    Map<String, Integer> read = new TreeMap<>();
    Map<String, Integer> events = new TreeMap<>();
    String firstFailure = null;
    CloudEventDeserializer deserializer = new CloudEventDeserializer();
    deserializer.configure(Map.of(), false);
    try (KafkaConsumer<String, byte[]> consumer =
        new KafkaConsumer<>(props, new StringDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> partitions = new ArrayList<>();
      for (int i = 1; i < args.length; i++) {
        for (PartitionInfo p : consumer.partitionsFor(args[i], Duration.ofSeconds(30))) {
          partitions.add(new TopicPartition(p.topic(), p.partition()));
        }
        read.put(args[i], 0);
        events.put(args[i], 0);
      }
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      Map<TopicPartition, Long> ends = consumer.endOffsets(partitions);
      long deadline = System.currentTimeMillis() + 120_000;
      while (!done(consumer, ends) && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(500))) {
          read.merge(record.topic(), 1, Integer::sum);
          try {
            CloudEvent event = deserializer.deserialize(record.topic(), record.headers(), record.value());
            if (event.getId() != null && event.getType() != null) {
              events.merge(record.topic(), 1, Integer::sum);
            }
          } catch (RuntimeException e) {
            if (firstFailure == null) {
              firstFailure = e.getMessage() + " (" + describe(record.headers()) + ")";
            }
          }
        }
      }
    }
    System.out.println("{\"read\": " + json(read) + ", \"events\": " + json(events) + ", \"first_failure\": "
        + (firstFailure == null ? "null" : "\"" + firstFailure.replace("\\", "\\\\").replace("\"", "'") + "\"")
        + "}");
  }

  private static boolean done(KafkaConsumer<String, byte[]> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
      if (consumer.position(end.getKey()) < end.getValue()) {
        return false;
      }
    }
    return true;
  }

  private static String describe(Headers headers) {
    StringBuilder out = new StringBuilder();
    headers.forEach(h -> out.append(h.key()).append(' '));
    return out.toString().trim();
  }

  private static String json(Map<String, Integer> counts) {
    StringBuilder out = new StringBuilder("{");
    counts.forEach((k, v) -> out.append(out.length() > 1 ? ", " : "").append('"').append(k).append("\": ").append(v));
    return out.append('}').toString();
  }
}
