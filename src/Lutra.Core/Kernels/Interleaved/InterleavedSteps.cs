using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>
/// Pieces shared by the row-interleaved kernels (Q4_0/Q8_0 × Q8_0 and Q4_1 × Q8_1 in full; the F16, K-quant and
/// TQ2_0 ones use the tile size, prefetch and conversions). Their weight tiles hold 16 rows; per 32-element block a
/// tile stores the 16 rows' f16 scales contiguously, then the
/// quants arranged so that a vector carries four consecutive quants of each of 8 or 16 rows (row r in int32 lane r;
/// see <see cref="QuantPosition"/>). One multiply-add against four activation bytes broadcast to every lane then
/// advances all those rows' dot products at once, and a block's row sums come out as the lanes of one vector: no
/// horizontal sum, one activation load serves sixteen rows, and the weights stream as one sequential read. The
/// layout has exactly the GGUF size (16 rows·rowBytes per tile); rows after the last whole tile keep the GGUF layout.
/// </summary>
internal static unsafe class InterleavedSteps
{
    /// <summary>Rows per weight tile: two groups of eight int32 lanes.</summary>
    public const int TileRows = 16;

    public const int Block = 32;

    /// <summary>2¹¹² (the literal rounds to it exactly: floats there are 2⁸⁹ apart).</summary>
    public const float TwoTo112 = 5.192296858534828E+33f;

    /// <summary>Bytes of one Q8_0 activation block (f16 scale, 32 int8).</summary>
    public const int ActivationBlockBytes = 34;

    /// <summary>Sidecar bytes per activation block: an int32 offset seeding the integer sums, an f32 scale.</summary>
    public const int SidecarBlockBytes = 8;

    /// <summary>The sidecar follows the standard Q8_0 row, 64-byte aligned.</summary>
    public static int SidecarOffset(int standardBytes) => (standardBytes + 63) & ~63;

    public static int ActivationBytes(int standardBytes, int n) => SidecarOffset(standardBytes) + ((n / Block * SidecarBlockBytes + 63) & ~63);

    /// <summary>False when a scale of a tile row is Inf or NaN: <see cref="HalfToSingle"/> only handles finite values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool FiniteScales(byte* source, long rowBytes, int rows, int blocks, int blockBytes)
    {
        for (var r = 0; r < rows; r++)
        {
            var row = source + r * rowBytes;
            for (var b = 0; b < blocks; b++)
                if ((*(ushort*)(row + b * blockBytes) & 0x7C00) == 0x7C00)
                    return false;
        }
        return true;
    }

    /// <summary>
    /// Rewrites whole 16-row tiles of f16-scaled 32-element blocks (Q4_0, Q8_0) into the tile layout: per block the 16
    /// rows' scales, then the quants in 4-byte groups at <see cref="QuantPosition"/>, each XORed with
    /// <paramref name="quantMask"/> (Q8_0 stores q + 128). Rows past the last whole tile are copied unchanged. False,
    /// writing nothing, when the shape does not fit the type or a tile row has a non-finite scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TryRepackTiles(byte* source, long rowBytes, int rows, int n, byte* destination, int blockBytes, uint quantMask)
    {
        if (n <= 0 || n % Block != 0 || rowBytes != (long)n / Block * blockBytes)
            return false;
        var blocks = n / Block;
        var quantGroups = (blockBytes - 2) / 4;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        if (!FiniteScales(source, rowBytes, tiles * TileRows, blocks, blockBytes))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = destination + tile * tileBytes;
            for (var r = 0; r < TileRows; r++)
            {
                var row = source + (tile * TileRows + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * blockBytes;
                    var tileBlock = dst + b * TileRows * blockBytes;
                    ((ushort*)tileBlock)[r] = *(ushort*)block;
                    for (var j = 0; j < quantGroups; j++)
                        *(uint*)(tileBlock + 2 * TileRows + QuantPosition(r, j)) = *(uint*)(block + 2 + 4 * j) ^ quantMask;
                }
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    /// <summary>
    /// The Q8_0 activation row (llama.cpp's x86 conversion, bit-identical to the reference), then per block
    /// <paramref name="offsetFactor"/>·Σa as int32 and d_a·<paramref name="scaleFactor"/> as f32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PrepareActivations(InstructionSet isa, float* x, int n, byte* state, int standardBytes, int offsetFactor, float scaleFactor)
    {
        if (isa >= InstructionSet.Avx512)
            Q8_0Kernels.QuantizeRowAvx512(x, state, n);
        else
            Q8_0Kernels.QuantizeRowVector128(x, state, n);
        var sidecar = state + SidecarOffset(standardBytes);
        var ones = Vector256.Create((byte)1);
        for (var b = 0; b < n / Block; b++)
        {
            var block = state + b * ActivationBlockBytes;
            var sum = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, Vector256.Load((sbyte*)(block + 2))), Vector256<short>.One));
            *(int*)(sidecar + b * SidecarBlockBytes) = offsetFactor * sum;
            *(float*)(sidecar + b * SidecarBlockBytes + 4) = HalfLookup.ToSingle(block) * scaleFactor;
        }
    }

    /// <summary>
    /// Where a tile block's quants keep the four quants of row <paramref name="row"/> (0..15) at quant offset
    /// 4·<paramref name="group"/>: 64 bytes per group, rows in order, so one 512-bit load holds a group for all 16
    /// rows and a 256-bit load at +0 or +32 holds it for rows 0-7 or 8-15.
    /// </summary>
    public static int QuantPosition(int row, int group) => (group * TileRows + row) * 4;

    /// <summary>
    /// Eight rows' f16 scales as f32, exactly, for finite values (zero and subnormals included). The sign-extended
    /// f16 shifted left by 13 has the magnitude bits in an f32's exponent/mantissa field, the sign in bit 31 and
    /// copies of it in bits 28-30, which the mask clears; that f32 is the value times 2⁻¹¹², so one multiply by
    /// 2¹¹² restores it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfToSingle(byte* halves, Vector256<int> signAndMagnitude, Vector256<float> twoTo112) =>
        (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)halves), 13) & signAndMagnitude).AsSingle() * twoTo112;

    /// <summary>Σ over eight quant vectors of quant·activation per int32 lane, in two chains so the dpbusd latencies overlap.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot8(Vector256<int> seed,
        Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
        Vector256<byte> w4, Vector256<byte> w5, Vector256<byte> w6, Vector256<byte> w7,
        Vector256<sbyte> a0, Vector256<sbyte> a1, Vector256<sbyte> a2, Vector256<sbyte> a3,
        Vector256<sbyte> a4, Vector256<sbyte> a5, Vector256<sbyte> a6, Vector256<sbyte> a7)
    {
        var even = AvxVnni.MultiplyWideningAndAdd(seed, w0, a0);
        var odd = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, w1, a1);
        even = AvxVnni.MultiplyWideningAndAdd(even, w2, a2);
        odd = AvxVnni.MultiplyWideningAndAdd(odd, w3, a3);
        even = AvxVnni.MultiplyWideningAndAdd(even, w4, a4);
        odd = AvxVnni.MultiplyWideningAndAdd(odd, w5, a5);
        even = AvxVnni.MultiplyWideningAndAdd(even, w6, a6);
        odd = AvxVnni.MultiplyWideningAndAdd(odd, w7, a7);
        return even + odd;
    }

    /// <summary>
    /// How far ahead of the weight stream the AVX-512 MatVec prefetches (the GEMM tiles, which re-read a tile per
    /// token group, do not prefetch). Measured at 2048 and 4096 columns against the same kernel without it (best of
    /// 41 alternating runs on a shared Zen 5): Q4_0 +7-15 % at 4-8 KiB (nothing at 1-2 KiB), Q8_0 +1-7 %. Every
    /// interleaved kernel prefetches into L2 (prefetcht1), not non-temporally (prefetchnta), as they once did: on an
    /// Intel Xeon (family 6 model 207) the non-temporal hint held them to 42-65 % of the read probe in `bench --kernels`
    /// and the L2 hint brought them to 77-111 % (Q8_0 5.8-6.3 → 15.7-16.3 GB/s, Q4_K 8.1-8.2 → 15.0-15.3, F16 8.0-9.8
    /// → 12.2-12.5; prefetcht0 in between, none at all 46-93 %); on Zen 4 the hint made no difference.
    /// </summary>
    public const int PrefetchDistance = 4096;

    /// <summary>
    /// How far ahead of the weight stream a line is prefetched a second time, into L1 (<see cref="PrefetchTwoStage"/>).
    /// </summary>
    public const int PrefetchToL1Distance = 2048;

    /// <summary>
    /// Prefetch of one weight line into L2 at <paramref name="ahead"/> (<paramref name="distance"/> bytes ahead of the
    /// stream position), and of the line <see cref="PrefetchToL1Distance"/> ahead of the position into L1. The L2 stage
    /// waits for memory in the L2's deep miss queue; the L1 stage then only waits for L2, where a prefetch into L1
    /// straight from memory would hold one of the core's few L1 miss buffers for the whole trip (docs/kernels.md,
    /// item 16). On the Intel host, streamed from memory with both stages alternated against the L2 stage alone in one
    /// process (4096×2048, two alternations of 15 GEMVs each): Q4_0 +8-16 %, Q6_K +12 %, Q3_K +7-10 %, F16 +5-6 %,
    /// Q4_1/Q5_0/IQ4_NL +3-5 %, Q8_0/Q2_K/TQ2_0 +0-4 %, the bit-serial tables level or up to +8 %. Q4_K, Q5_K and IQ4_XS
    /// measured level or lower and keep the L2 stage alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchTwoStage(byte* ahead, int distance)
    {
        Sse.Prefetch1(ahead);
        Sse.Prefetch0(ahead - distance + PrefetchToL1Distance);
    }

    /// <summary>
    /// Prefetch into L2 of five cache lines <see cref="PrefetchDistance"/> ahead: one tile block of Q4_0 (288
    /// bytes) or Q4_1 (320 bytes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchFiveLineTileBlock(byte* tileBlock)
    {
        var p = tileBlock + PrefetchDistance;
        PrefetchTwoStage(p, PrefetchDistance);
        PrefetchTwoStage(p + 64, PrefetchDistance);
        PrefetchTwoStage(p + 128, PrefetchDistance);
        PrefetchTwoStage(p + 192, PrefetchDistance);
        PrefetchTwoStage(p + 256, PrefetchDistance);
    }

    /// <summary>
    /// Prefetch into L2 of the lines over <paramref name="bytes"/> (a constant) from <paramref name="position"/>,
    /// <see cref="PrefetchDistance"/> ahead: called on consecutive ranges of a stream, it covers every line once or
    /// twice (a range's last partial line is the next one's first).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchStream(byte* position, int bytes)
    {
        var p = position + PrefetchDistance;
        for (var o = 0; o < bytes; o += 64)
            PrefetchTwoStage(p + o, PrefetchDistance);
    }

    /// <summary>Prefetch into L2 of the nine cache lines over one Q8_0 tile block (544 bytes) <see cref="PrefetchDistance"/> ahead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchQ8_0TileBlock(byte* tileBlock)
    {
        var p = tileBlock + PrefetchDistance;
        PrefetchTwoStage(p, PrefetchDistance);
        PrefetchTwoStage(p + 64, PrefetchDistance);
        PrefetchTwoStage(p + 128, PrefetchDistance);
        PrefetchTwoStage(p + 192, PrefetchDistance);
        PrefetchTwoStage(p + 256, PrefetchDistance);
        PrefetchTwoStage(p + 320, PrefetchDistance);
        PrefetchTwoStage(p + 384, PrefetchDistance);
        PrefetchTwoStage(p + 448, PrefetchDistance);
        PrefetchTwoStage(p + 512, PrefetchDistance);
    }

    /// <summary>Four activation bytes (one int32) broadcast to every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Broadcast(byte* quads) => Vector256.Create(*(int*)quads).AsSByte();

    /// <summary>Four activation bytes (one int32) broadcast to every lane of a 512-bit vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Broadcast512(byte* quads) => Vector512.Create(*(int*)quads).AsSByte();

    /// <summary>16 rows' f16 values as f32, exactly for finite values (the trick of <see cref="HalfToSingle"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle512(byte* halves) =>
        (Vector512.ShiftLeft(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)halves)), 13) & Vector512.Create(unchecked((int)0x8FFF_FFFF))).AsSingle()
        * Vector512.Create(TwoTo112);

    /// <summary>Four quant groups of eight rows (256-bit loads at 64-byte steps) as low and high nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>)
        Nibbles256(byte* quants)
    {
        var mask = Vector256.Create((byte)0x0F);
        var v0 = Vector256.Load(quants);
        var v1 = Vector256.Load(quants + 64);
        var v2 = Vector256.Load(quants + 128);
        var v3 = Vector256.Load(quants + 192);
        return (v0 & mask, v1 & mask, v2 & mask, v3 & mask,
            Vector256.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & mask, Vector256.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & mask,
            Vector256.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & mask, Vector256.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & mask);
    }
}
