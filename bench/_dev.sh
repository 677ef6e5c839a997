C=$(python3 -c "
import sys; sys.path.insert(0,'python')
from liquidgemm._configs import CONFIGS
print(','.join(c.id for c in CONFIGS if c.out in ('bf16','s32') and c.tile_n<=64 and not c.fused_quant))")
bash bench/run_device.sh $C build 2>&1 | grep -v C7519 | tail -1
timeout 150 python3 -m pytest tests/test_split_k.py tests/test_kernel_shapes.py -q -m gpu -p no:cacheprovider 2>&1 | tail -1
python3 bench/profile_decode.py --shape 10240,8192 --shape 8192,8192 --m 1,16 --config w4a8_sm90_bf16_t128x16x128_c1x1_s15_coop_splitk --splits 0,2,4,8 2>&1 | grep us
python3 -m liquidgemm.tune --model llama3-8b,llama3-70b --m 1,2,4,8,16,32,64 --repeats 10 --cache /tmp/tc.json \
  --json-out bench/results/h100/tune_decode.json --write-heuristic python/liquidgemm/data/heuristic_h100.json 2>&1 | tail -2
cp python/liquidgemm/data/heuristic_h100.json "$(python3 -c 'import liquidgemm,os;print(os.path.dirname(liquidgemm.__file__))')/data/"
P=liquidgemm,liquidgemm-linear,cublas-bf16,fp8-rowwise
for m in 70b 8b; do python3 -m liquidgemm.bench --model llama3-$m --m 1,16 --peers $P --name llama3-$m-decode --no-plot --out bench/results/h100 2>&1 | tail -1; done
tar -cf $OUT/res.tar bench/results/h100 python/liquidgemm/data
