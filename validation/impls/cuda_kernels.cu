// Real CUDA kernels for the DSA slot-mapping code paths (SPEC section 4), compiled at run time by CuPy.
// Position ops follow FastDeploy's launch shape: one block, one thread per request (<<<1, bsz>>>); each
// thread loops over the requests before it to find its write offset, then writes its runs of positions.
// A write past the persistent buffer is counted in spill[0] (and its largest index in spill[1]) instead
// of corrupting memory, so the host can report it.

__device__ void write_run(int* buf, int buf_len, int dst, int first, int count, int* spill) {
    for (int i = 0; i < count; ++i) {
        int at = dst + i;
        if (at < buf_len) { buf[at] = first + i; }
        else { atomicAdd(&spill[0], 1); atomicMax(&spill[1], at); }
    }
}

// v1 (get_position_ids_and_mask_encoder_batch, before and at #7367).
extern "C" __global__ void positions_v1(const int* enc, const int* dec, const int* this_time, int* buf,
                                        int buf_len, int* spill) {
    int t = threadIdx.x;
    int offset = 0;
    for (int i = 0; i < t; ++i) { offset += enc[i] + (dec[i] > 0 ? this_time[i] : 0); }
    write_run(buf, buf_len, offset, 0, enc[t], spill);
    if (dec[t] > 0) { write_run(buf, buf_len, offset + enc[t], dec[t], this_time[t], spill); }
}

// v3 (#7727): prefill writes enc positions from dec; decode writes this_time positions from dec.
extern "C" __global__ void positions_v3(const int* enc, const int* dec, const int* this_time, int* buf,
                                        int buf_len, int* spill) {
    int t = threadIdx.x;
    int offset = 0;
    for (int i = 0; i < t; ++i) { offset += enc[i] > 0 ? enc[i] : (dec[i] > 0 ? this_time[i] : 0); }
    int count = enc[t] > 0 ? enc[t] : (dec[t] > 0 ? this_time[t] : 0);
    write_run(buf, buf_len, offset, dec[t], count, spill);
}

// get_position_ids: offset is the prefix sum of this_time.
extern "C" __global__ void positions_renamed(const int* enc, const int* dec, const int* this_time, int* buf,
                                             int buf_len, int* spill) {
    int t = threadIdx.x;
    int offset = 0;
    for (int i = 0; i < t; ++i) { offset += this_time[i]; }
    write_run(buf, buf_len, offset, dec[t], this_time[t], spill);
}

// #7960 get_position_ids_and_slot_mapping (get_position_ids_and_slot_mapping.cu lines 18-64 at 7198b5883a0e):
// int64 positions; the batch id is read from batch_id_per_token[idx] (line 55), the table index is unchecked.
// The arithmetic is FastDeploy's: pos_id, block_idx, block_offset and the table index batch_id * max_num_blocks
// + block_idx in int (lines 46-58), the slot product in int64 (lines 61-62); the pointers are __restrict__
// (lines 19-28) and the loop #pragma unroll (line 44), as there. Timed beside the kernel compiled from that file
// (bench --fastdeploy): BENCHMARKS.md, "FastDeploy's own kernels".
// A negative flat index (batch id -1) reads before the table: counted in before[0], the smallest such token
// in before[1], and the slot left as it was (or set to neg_slot when fix_negative: the tail_reset variant).
// fault[0] is set when a read would leave the table past its last row.
extern "C" __global__ void fused_positions_and_slots(const int* __restrict__ dec, const int* __restrict__ this_time,
                                                     const int* __restrict__ batch_id, const int* __restrict__ tables,
                                                     int bsz, int width, int block_size,
                                                     long long* __restrict__ pos_buf, long long* __restrict__ slot_buf,
                                                     int buf_len, int fix_negative, long long neg_slot, int* spill,
                                                     int* fault, int* before) {
    int t = threadIdx.x;
    int offset = 0;
    for (int i = 0; i < t; ++i) { offset += this_time[i]; }
    int count = this_time[t];
#pragma unroll
    for (int i = 0; i < count; ++i) {
        int at = offset + i;
        int pos = dec[t] + i;
        if (at >= buf_len) { atomicAdd(&spill[0], 1); atomicMax(&spill[1], at); continue; }
        pos_buf[at] = pos;
        int flat = batch_id[at] * width + pos / block_size;
        if (flat < 0) {
            if (fix_negative) { slot_buf[at] = neg_slot; }
            else { atomicAdd(&before[0], 1); atomicMin(&before[1], at); }
            continue;
        }
        if (flat >= bsz * width) { atomicExch(&fault[0], 1); continue; }
        slot_buf[at] = (long long)tables[flat] * block_size + pos % block_size;
    }
}

// The per-layer formula, one thread per launched token row, with Paddle's indexing and integer semantics
// (paddle_ops.per_layer_slots): a negative row or column index is normalised once (row -1 reads the last row,
// column -1 the row's last column); pos // bs and pos % bs are floor division and the divisor-signed remainder;
// slot = ids * bs + pos % bs in int32, then widened to int64. fault[0] flags a read outside the table and
// fault[1] holds the smallest token row that made one.
extern "C" __global__ void per_layer_slots(const int* tables, int nrows, int width, const int* batch_id,
                                           const int* positions, int n, int block_size, long long* out, int* fault) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) { return; }
    int row = batch_id[t] < 0 ? batch_id[t] + nrows : batch_id[t];
    int pos = positions[t];
    int col = pos / block_size;
    int rem = pos % block_size;
    if (rem != 0 && pos < 0) { col -= 1; rem += block_size; }
    if (col < 0) { col += width; }
    long long flat = (long long)row * width + col;
    if (flat < 0 || flat >= (long long)nrows * width) {
        atomicExch(&fault[0], 1); atomicMin(&fault[1], t); out[t] = 0; return;
    }
    unsigned int product = (unsigned int)tables[flat] * (unsigned int)block_size + (unsigned int)rem;
    out[t] = (long long)(int)product;
}
