using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q8_0 weights · Q8_0 activations, AVX-512. The sidecar holds the activations widened to int16 and their
/// block scales as f32, so a weight block costs one widening load and one vpmaddwd: no sign trick, and the
/// activation work is done once per input instead of once per row. Four rows share each activation load.
/// </summary>
public sealed unsafe class Q8_0MatVecAvx512() : MatVecKernel(Quants.GgmlType.Q8_0, InstructionSet.Avx512, "AVX-512 int16 MAD, 4 rows")
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
        Sidecar(state, n, out var wide, out var scales);
        var blocks = n / Block;
        var r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            var w0 = weights + r * rowBytes;
            var w1 = w0 + rowBytes;
            var w2 = w1 + rowBytes;
            var w3 = w2 + rowBytes;
            Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (var b = 0; b < blocks; b++, w0 += BlockBytes, w1 += BlockBytes, w2 += BlockBytes, w3 += BlockBytes)
            {
                var a = Vector512.Load(wide + b * Block);
                var s = scales[b];
                acc0 = Step(w0, a, s, acc0);
                acc1 = Step(w1, a, s, acc1);
                acc2 = Step(w2, a, s, acc2);
                acc3 = Step(w3, a, s, acc3);
            }
            y[r] = Vector512.Sum(acc0);
            y[r + 1] = Vector512.Sum(acc1);
            y[r + 2] = Vector512.Sum(acc2);
            y[r + 3] = Vector512.Sum(acc3);
        }
        for (; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector512<float> acc = default;
            for (var b = 0; b < blocks; b++, w += BlockBytes)
                acc = Step(w, Vector512.Load(wide + b * Block), scales[b], acc);
            y[r] = Vector512.Sum(acc);
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
/// ([lo₀ lo₁ hi₀ hi₁]), those offsets, and the block scales as f32. Four rows share each activation load.
/// </summary>
public sealed unsafe class Q4_0MatVecAvx512() : MatVecKernel(Quants.GgmlType.Q4_0, InstructionSet.Avx512, "AVX-512 maddubs, 2 blocks x 4 rows")
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
        Sidecar(state, n, out var permuted, out var offsets, out var scales);
        var blocks = n / Block;
        var fullPairs = blocks / 2;
        var r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            var w0 = weights + r * rowBytes;
            var w1 = w0 + rowBytes;
            var w2 = w1 + rowBytes;
            var w3 = w2 + rowBytes;
            Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (var p = 0; p < fullPairs; p++)
            {
                var a = Vector512.Load(permuted + 64 * p);
                var off = Vector512.Load(offsets + 16 * p);
                var s0 = scales[2 * p];
                var s1 = scales[2 * p + 1];
                var o = p * 2 * WeightBlockBytes;
                acc0 = PairStep(w0 + o, a, off, s0, s1, acc0);
                acc1 = PairStep(w1 + o, a, off, s0, s1, acc1);
                acc2 = PairStep(w2 + o, a, off, s0, s1, acc2);
                acc3 = PairStep(w3 + o, a, off, s0, s1, acc3);
            }
            y[r] = Vector512.Sum(acc0) + Tail(w0, permuted, offsets, scales, blocks);
            y[r + 1] = Vector512.Sum(acc1) + Tail(w1, permuted, offsets, scales, blocks);
            y[r + 2] = Vector512.Sum(acc2) + Tail(w2, permuted, offsets, scales, blocks);
            y[r + 3] = Vector512.Sum(acc3) + Tail(w3, permuted, offsets, scales, blocks);
        }
        for (; r < rows; r++)
        {
            var w = weights + r * rowBytes;
            Vector512<float> acc = default;
            for (var p = 0; p < fullPairs; p++)
            {
                acc = PairStep(w + p * 2 * WeightBlockBytes, Vector512.Load(permuted + 64 * p), Vector512.Load(offsets + 16 * p),
                    scales[2 * p], scales[2 * p + 1], acc);
            }
            y[r] = Vector512.Sum(acc) + Tail(w, permuted, offsets, scales, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairStep(byte* w, Vector512<sbyte> a, Vector512<int> offset, float s0, float s1, Vector512<float> acc)
    {
        var nibbles = Vector256.Create(Vector128.Load(w + 2), Vector128.Load(w + WeightBlockBytes + 2));
        var low = nibbles & Vector256.Create((byte)0x0F);
        var high = Vector256.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F);
        var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Create(low, high), a), Vector512<short>.One) - offset;
        var d0 = Vector128.Create(HalfLookup.ToSingle(w) * s0);
        var d1 = Vector128.Create(HalfLookup.ToSingle(w + WeightBlockBytes) * s1);
        var half = Vector256.Create(d0, d1);
        return Avx512F.FusedMultiplyAdd(Vector512.ConvertToSingle(sums), Vector512.Create(half, half), acc);
    }

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
        var sums = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.Create(low, high), Vector256.Load(permuted + 64 * p)), Vector256<short>.One)
            - Vector256.Load(offsets + 16 * p);
        return Vector256.Sum(sums) * (HalfLookup.ToSingle(w) * scales[b]);
    }
}
