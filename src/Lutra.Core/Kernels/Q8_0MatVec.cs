using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q8_0 weights · Q8_0 activations, AVX-512. The sidecar holds the activations widened to int16 and their
/// block scales as f32, so a weight block costs one widening load and one vpmaddwd: no sign trick, and the
/// activation work is done once per input instead of once per row. 
/// </summary>
public sealed unsafe class Q8_0MatVecAvx512() : MatVecKernel(Quants.GgmlType.Q8_0, InstructionSet.Avx512, "AVX-512 int16 MAD")
{
    private const int Block = 32;
    private const int BlockBytes = 34;

    public override int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n)) + n * 2 + AlignUp(n / Block * 4);

    private void Sidecar(byte* state, int n, out short* wide, out float* scales)
    {
        wide = (short*)(state + AlignUp(StandardActivationBytes(n)));
        scales = (float*)(wide + n);
    }

    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Q8_0Kernels.QuantizeRowAvx512(x, state, n);
        Sidecar(state, n, out var wide, out var scales);
        for (var b = 0; b < n / Block; b++)
        {
            var block = state + b * BlockBytes;
            Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(block + 2))).Store(wide + b * Block);
            scales[b] = HalfLookup.ToSingle(block);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var wide = (short*)(state + AlignUp(StandardActivationBytes(n)));
        var scales = (float*)(wide + n);
        var blocks = n / Block;
        // One row at a time so the weights stream sequentially (see Q4_0MatVecAvx512.MatVec).
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector512<float> acc0 = default, acc1 = default;
            var b = 0;
            for (; b + 1 < blocks; b += 2, w += 2 * BlockBytes)
            {
                acc0 = Step(w, Vector512.Load(wide + b * Block), scales[b], acc0);
                acc1 = Step(w + BlockBytes, Vector512.Load(wide + b * Block + Block), scales[b + 1], acc1);
            }
            if (b < blocks)
                acc0 = Step(w, Vector512.Load(wide + b * Block), scales[b], acc0);
            y[r] = Vector512.Sum(acc0 + acc1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Step(byte* block, Vector512<short> a, float activationScale, Vector512<float> acc)
    {
        var products = Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(block + 2))), a);
        return Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(products), Vector512.Create(HalfLookup.ToSingle(block) * activationScale), acc);
    }
}

/// <summary>
/// Q4_0 weights · Q8_0 activations, AVX-512, two blocks per 512-bit step. Weight nibbles are used unsigned
/// (0..15) and the −8 offset is subtracted through precomputed 8·Σa lane sums, which avoids the sign trick.
/// The sidecar stores the activations of each block pair permuted to the order the nibble unpack produces
/// ([lo₀ lo₁ hi₀ hi₁]), those offsets, and the block scales as f32. 
/// </summary>
public sealed unsafe class Q4_0MatVecAvx512() : MatVecKernel(Quants.GgmlType.Q4_0, InstructionSet.Avx512, "AVX-512 maddubs, 2 blocks per step")
{
    private const int Block = 32;
    private const int WeightBlockBytes = 18;
    private const int ActivationBlockBytes = 34;

    private static int Pairs(int n) => (n / Block + 1) / 2;

    public override int ActivationBytes(int n) =>
        AlignUp(StandardActivationBytes(n)) + Pairs(n) * 64 * 2 + AlignUp(n / Block * 4);

    private void Sidecar(byte* state, int n, out sbyte* permuted, out int* offsets, out float* scales)
    {
        permuted = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        offsets = (int*)(permuted + Pairs(n) * 64);
        scales = (float*)(offsets + Pairs(n) * 16);
    }

    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Q8_0Kernels.QuantizeRowAvx512(x, state, n);
        Sidecar(state, n, out var permuted, out var offsets, out var scales);
        var blocks = n / Block;
        var eights = Vector512.Create((byte)8);
        for (var p = 0; p < Pairs(n); p++)
        {
            var q0 = (sbyte*)(state + 2 * p * ActivationBlockBytes + 2);
            var dst = permuted + 64 * p;
            if (2 * p + 1 < blocks)
            {
                var q1 = q0 + ActivationBlockBytes;
                Vector128.Load(q0).Store(dst);
                Vector128.Load(q1).Store(dst + 16);
                Vector128.Load(q0 + 16).Store(dst + 32);
                Vector128.Load(q1 + 16).Store(dst + 48);
            }
            else
            {
                // A lone last block keeps element order in the lower half, matching the 256-bit tail step.
                Vector256.Load(q0).Store(dst);
                Vector256<sbyte>.Zero.Store(dst + 32);
            }
            var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(eights, Vector512.Load(dst)), Vector512<short>.One);
            sums.Store(offsets + 16 * p);
        }
        for (var b = 0; b < blocks; b++)
            scales[b] = HalfLookup.ToSingle(state + b * ActivationBlockBytes);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        // Sidecar pointers as plain locals (out-parameters would keep them in memory inside the loop).
        var permuted = (sbyte*)(state + AlignUp(StandardActivationBytes(n)));
        var offsets = (int*)(permuted + Pairs(n) * 64);
        var scales = (float*)(offsets + Pairs(n) * 16);
        var blocks = n / Block;
        var fullPairs = blocks / 2;
        // Lane → block of a pair step's int32 sums: [b₀ ×4, b₁ ×4, b₀ ×4, b₁ ×4].
        var scaleLanes = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
        // One row at a time: the weights then stream from memory sequentially. Interleaving several rows
        // (to share activation loads) measured at half the read bandwidth here; the activations stay in L1/L2.
        for (var r = 0; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector512<float> acc0 = default, acc1 = default;
            var p = 0;
            for (; p + 1 < fullPairs; p += 2, w += 4 * WeightBlockBytes)
            {
                acc0 = PairStep(w, Vector512.Load(permuted + 64 * p), Vector512.Load(offsets + 16 * p),
                    Vector128.LoadUnsafe(ref *(scales + 2 * p)), scaleLanes, acc0);
                acc1 = PairStep(w + 2 * WeightBlockBytes, Vector512.Load(permuted + 64 * p + 64), Vector512.Load(offsets + 16 * p + 16),
                    Vector128.LoadUnsafe(ref *(scales + 2 * p + 2)), scaleLanes, acc1);
            }
            if (p < fullPairs)
            {
                acc0 = PairStep(w, Vector512.Load(permuted + 64 * p), Vector512.Load(offsets + 16 * p),
                    Vector128.LoadUnsafe(ref *(scales + 2 * p)), scaleLanes, acc0);
            }
            y[r] = Vector512.Sum(acc0 + acc1) + Tail(weights + r * rowBytes, permuted, offsets, scales, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairStep(byte* w, Vector512<sbyte> a, Vector512<int> offset, Vector128<float> activationScales,
        Vector512<int> scaleLanes, Vector512<float> acc)
    {
        var nibbles = VectorJoin.Join(Vector128.Load(w + 2), Vector128.Load(w + WeightBlockBytes + 2));
        var low = nibbles & Vector256.Create((byte)0x0F);
        var high = Vector256.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F);
        var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(VectorJoin.Join(low, high), a), Vector512<short>.One) - offset;
        // d_w·d_a for both blocks in lanes 0 and 1, then spread to the lanes each block's sums occupy.
        var weightScales = Vector128.Create(HalfLookup.ToSingle(w), HalfLookup.ToSingle(w + WeightBlockBytes), 0f, 0f);
        var scale = Avx512F.PermuteVar16x32((weightScales * activationScales).ToVector256Unsafe().ToVector512Unsafe(), scaleLanes);
        return Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(sums), scale, acc);
    }

    // Inlined on purpose: a call here would force the four accumulators out of registers inside the loop
    // (every vector register is caller-saved).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(byte* row, sbyte* permuted, int* offsets, float* scales, int blocks)
    {
        if ((blocks & 1) == 0)
            return 0;
        var b = blocks - 1;
        var w = row + b * WeightBlockBytes;
        var p = b / 2;
        var nibbles = Vector128.Load(w + 2);
        var low = nibbles & Vector128.Create((byte)0x0F);
        var high = Vector128.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F);
        var sums = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(VectorJoin.Join(low, high), Vector256.Load(permuted + 64 * p)), Vector256<short>.One)
            - Vector256.Load(offsets + 16 * p);
        return Vector256.Sum(sums) * (HalfLookup.ToSingle(w) * scales[b]);
    }
}
