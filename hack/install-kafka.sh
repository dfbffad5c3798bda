#!/usr/bin/env bash
# Installs Apache Kafka's broker (the org.apache.kafka:kafka_2.13 jar and its runtime dependencies, log4j2 for its
# logs) from Maven Central into the cache, keyed by version: no Docker, no download site but Maven's. The stream
# tests start one KRaft broker on loopback from these jars (testkit/kafka.py).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dest="$MR_CACHE/kafka-$KAFKA_VERSION"
if [[ -f $dest/.installed ]]; then
  exit 0
fi
command -v mvn >/dev/null || { log "mvn not on PATH: install Maven (apt-get install -y maven)"; exit 1; }
command -v java >/dev/null || { log "java not on PATH: Kafka $KAFKA_VERSION needs Java 17 or newer"; exit 1; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cat >"$scratch/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.modelrollout</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
log "fetching Apache Kafka $KAFKA_VERSION (kafka_2.13 and its runtime dependencies) from Maven Central"
mvn -q -B -f "$scratch/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$scratch/out/libs" >&2
cat >"$scratch/out/log4j2.properties" <<'LOG'
# Warnings and errors, and the broker saying it started: the tests' logs stay readable.
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
LOG
touch "$scratch/out/.installed"
publish_dir "$scratch/out" "$dest"
log "Kafka $KAFKA_VERSION: $(ls "$dest/libs" | wc -l) jars in $dest"
