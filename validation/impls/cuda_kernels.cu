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

// #7960 get_position_ids_and_slot_mapping: int64 positions and slots in one kernel, no -1 or width checks.
// fault[0] is set when a read would leave the block table (the real kernel would read foreign memory).
extern "C" __global__ void fused_positions_and_slots(const int* dec, const int* this_time, const int* tables,
                                                     int bsz, int width, int block_size, long long* pos_buf,
                                                     long long* slot_buf, int buf_len, int* spill, int* fault) {
    int t = threadIdx.x;
    int offset = 0;
    for (int i = 0; i < t; ++i) { offset += this_time[i]; }
    for (int i = 0; i < this_time[t]; ++i) {
        int at = offset + i;
        long long pos = (long long)dec[t] + i;
        if (at >= buf_len) { atomicAdd(&spill[0], 1); atomicMax(&spill[1], at); continue; }
        pos_buf[at] = pos;
        long long flat = (long long)t * width + pos / block_size;
        if (flat >= (long long)bsz * width) { atomicExch(&fault[0], 1); continue; }
        slot_buf[at] = (long long)tables[flat] * block_size + pos % block_size;
    }
}

// The per-layer formula, one thread per launched token row: ids = tables[batch_id, pos // bs]
// (row -1 wraps to the last row, as Paddle's indexing does), slot = ids * bs + pos % bs in int32,
// then widened to int64.
extern "C" __global__ void per_layer_slots(const int* tables, int bsz, int width, const int* batch_id,
                                           const int* positions, int n, int block_size, long long* out, int* fault) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) { return; }
    int row = batch_id[t] < 0 ? batch_id[t] + bsz : batch_id[t];
    int pos = positions[t];
    long long flat = (long long)row * width + pos / block_size;
    if (flat < 0 || flat >= (long long)bsz * width) { atomicExch(&fault[0], 1); out[t] = 0; return; }
    unsigned int product = (unsigned int)tables[flat] * (unsigned int)block_size + (unsigned int)(pos % block_size);
    out[t] = (long long)(int)product;
}
