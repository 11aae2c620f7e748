#!/bin/bash
# benchmarks/tree_rss.sh PID OUT: (a run of metaconf is several processes now; GNU time reports only the largest)
# every second, the summed RSS (kB) of PID and all its descendants; the max is the last line
pid=$1; out=$2; max=0
while kill -0 $pid 2>/dev/null; do
  pids="$pid $(pgrep -P $pid) $(for c in $(pgrep -P $pid); do pgrep -P $c; done)"
  sum=0; for p in $pids; do r=$(awk '/VmRSS/{print $2}' /proc/$p/status 2>/dev/null); sum=$((sum + ${r:-0})); done
  [ $sum -gt $max ] && max=$sum
  echo "$(date +%s) $sum $(echo $pids | wc -w)" >> $out.log
  sleep 1
done
echo "max $max" >> $out.log
