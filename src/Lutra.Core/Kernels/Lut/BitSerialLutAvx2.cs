using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// The bit-serial LUT kernel on AVX2: tables broadcast to both 128-bit lanes, one <c>vpshufb ymm</c> per 16 rows ×
/// 2 planes. AVX2-only CPUs have 16 ymm registers, so the tables are broadcast from L1 where they are used
/// (<c>vbroadcasti128</c> is a plain load) instead of being held across chunks. Same layout and arithmetic as
/// <see cref="BitSerialLutAvx512"/>.
/// </summary>
public sealed unsafe class BitSerialLutAvx2(GgmlType weightType)
    : BitSerialLutMatVec(weightType, InstructionSet.Avx2, "AVX2 bit-serial LUT")
{
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void FullChunks(byte* tile, int h, int chunks, byte* sidecar, int n, float* y)
    {
        if (WeightType == GgmlType.Q2_K)
            Q2_KChunk(tile, sidecar, n / 256, y);
        else
            Q4Chunks(tile, h, chunks, sidecar, n / 32, y, WeightType == GgmlType.Q4_1);
    }

    // Both kernels prefetch the weight stream into L2 as the AVX-512 ones do (docs/kernels.md, item 13).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q4Chunks(byte* tile, int h, int chunks, byte* sidecar, int blocks, float* y, bool hasMin)
    {
        var blockBytes = hasMin ? 20 : 18;
        var chunkBytes = ChunkRows * blockBytes;
        var blockStride = (long)h * blockBytes;
        for (var i = 0; i < chunks * ChunkRows; i += 8)
            Vector256<float>.Zero.Store(y + i);
        var nibble = Vector256.Create((byte)0x0F);
        for (var b = 0; b < blocks; b++, tile += blockStride, sidecar += Q4Record)
        {
            var coefficients = (float*)(sidecar + 256);
            var a = Vector256.Create(coefficients[0]);
            var bias = Vector256.Create(coefficients[1]);
            for (var c = 0; c < chunks; c++)
            {
                // Both halves read the chunk's 9 (Q4_0) or 10 (Q4_1) lines: prefetched once, as the AVX-512 kernel does.
                var chunk = tile + c * chunkBytes;
                InterleavedSteps.PrefetchQ8_0TileBlock(chunk);
                Sse.Prefetch1(chunk + InterleavedSteps.PrefetchDistance + 576);
                for (var half = 0; half < 2; half++)
                {
                    // Rows 16·half .. 16·half+15 of the chunk: 32 bytes into each index vector and into the scales.
                    var w = tile + c * chunkBytes + 32 * half;
                    var yc = y + c * ChunkRows + 16 * half;
                    var acc = Vector256<short>.Zero;
                    var lowL = Vector256<sbyte>.Zero;
                    var highL = Vector256<sbyte>.Zero;
                    for (var j = 0; j < 8; j++)
                        Lookup(w + 64 * j, sidecar + 32 * j, nibble, ref acc, ref lowL, ref highL);
                    var rest = Avx2.MultiplyAddAdjacent(Vector256.Create((ushort)0x0201).AsByte(), lowL)
                        + Avx2.MultiplyAddAdjacent(Vector256.Create((ushort)0x0804).AsByte(), highL);
                    var four = Vector256.Create(4f);
                    var lower = Fma.MultiplyAdd(Fma.MultiplyAdd(ToSingle(acc.GetLower()), four, ToSingle(rest.GetLower())), a, bias);
                    var upper = Fma.MultiplyAdd(Fma.MultiplyAdd(ToSingle(acc.GetUpper()), four, ToSingle(rest.GetUpper())), a, bias);
                    var y0 = Fma.MultiplyAdd(lower, HalfToSingle(Vector128.Load((short*)(w + 512))), Vector256.Load(yc));
                    var y1 = Fma.MultiplyAdd(upper, HalfToSingle(Vector128.Load((short*)(w + 528))), Vector256.Load(yc + 8));
                    if (hasMin)
                    {
                        var sum = Vector256.Create(coefficients[2]);
                        y0 = Fma.MultiplyAdd(HalfToSingle(Vector128.Load((short*)(w + 576))), sum, y0);
                        y1 = Fma.MultiplyAdd(HalfToSingle(Vector128.Load((short*)(w + 592))), sum, y1);
                    }
                    y0.Store(yc);
                    y1.Store(yc + 8);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Table(byte* table) => Avx2.BroadcastVector128ToVector256(table).AsSByte();

    /// <summary>16 rows × 4 planes on one exact table (H at <paramref name="tables"/>, L 16 bytes later).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lookup(byte* index, byte* tables, Vector256<byte> nibble, ref Vector256<short> acc, ref Vector256<sbyte> lowL, ref Vector256<sbyte> highL)
    {
        var v = Vector256.Load(index);
        var lowNibbles = (v & nibble).AsSByte();
        var highNibbles = (Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & nibble).AsSByte();
        var high = Table(tables);
        acc += Avx2.MultiplyAddAdjacent(Vector256.Create((ushort)0x0201).AsByte(), Avx2.Shuffle(high, lowNibbles))
            + Avx2.MultiplyAddAdjacent(Vector256.Create((ushort)0x0804).AsByte(), Avx2.Shuffle(high, highNibbles));
        var low = Table(tables + 16);
        lowL += Avx2.Shuffle(low, lowNibbles);
        highL += Avx2.Shuffle(low, highNibbles);
    }

    /// <summary>One sub-block of 16 rows on 4 exact tables, as <see cref="BitSerialLutAvx512"/>'s: H by (4, 8), L summed as bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> SubBlock(byte* index, byte* tables, Vector256<byte> nibble)
    {
        var v0 = Vector256.Load(index);
        var v1 = Vector256.Load(index + 64);
        var low0 = (v0 & nibble).AsSByte();
        var high0 = (Vector256.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & nibble).AsSByte();
        var low1 = (v1 & nibble).AsSByte();
        var high1 = (Vector256.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & nibble).AsSByte();
        var planes01Times4 = Vector256.Create((ushort)0x0804).AsByte();
        var main = Avx2.MultiplyAddAdjacent(planes01Times4, Avx2.Shuffle(Table(tables), low0))
            + Avx2.MultiplyAddAdjacent(planes01Times4, Avx2.Shuffle(Table(tables + 32), high0))
            + Avx2.MultiplyAddAdjacent(planes01Times4, Avx2.Shuffle(Table(tables + 64), low1))
            + Avx2.MultiplyAddAdjacent(planes01Times4, Avx2.Shuffle(Table(tables + 96), high1));
        var rest = Avx2.Shuffle(Table(tables + 16), low0) + Avx2.Shuffle(Table(tables + 48), high0)
            + Avx2.Shuffle(Table(tables + 80), low1) + Avx2.Shuffle(Table(tables + 112), high1);
        return main + Avx2.MultiplyAddAdjacent(Vector256.Create((ushort)0x0201).AsByte(), rest);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ToSingle(Vector128<short> sums) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(sums));

    /// <summary>Exact f16 → f32 of 8 finite halves, as <see cref="BitSerialLutAvx512"/> does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfToSingle(Vector128<short> half)
    {
        var bits = Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(half), 13) & Vector256.Create(unchecked((int)0x8FFF_E000));
        return bits.AsSingle() * Vector256.Create(0x7780_0000).AsSingle();
    }

    /// <summary>
    /// One 32-row Q2_K chunk as two 16-row halves. Within a half, the word unpack leaves rows 0-3, 8-11 (low) and
    /// 4-7, 12-15 (high): 8 consecutive <see cref="BitSerialLutMatVec.Q2_KScalePosition"/> positions each.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q2_KChunk(byte* w, byte* sidecar, int superBlocks, float* y)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var low4 = Vector256.Create((short)0x0F);
        // Per half: accumulators for positions 8·half .. +7 (low unpack) and 16 + 8·half .. +7 (high unpack).
        Vector256<float> y00 = default, y01 = default, y10 = default, y11 = default;
        for (var sb = 0; sb < superBlocks; sb++, w += 84 * ChunkRows, sidecar += Q2_KSuperBlockRecord)
        {
            var f = (float*)(sidecar + 8 * Q2_KPairRecord);
            var halfS = Vector256.Create(f[0]);
            var s = Vector256.Create(f[1]);
            var scales = (short*)(w + 80 * ChunkRows);
            for (var half = 0; half < 2; half++)
            {
                Vector256<int> e0 = default, e1 = default, c0 = default, c1 = default;
                var pair = w + 32 * half;
                var record = sidecar;
                for (var p = 0; p < 8; p++, pair += 320, record += Q2_KPairRecord)
                {
                    if (half == 0)
                        InterleavedSteps.PrefetchFiveLineTileBlock(pair); // the pair's 320 bytes, for both halves
                    var sums = (short*)(record + 256);
                    var accA = SubBlock(pair, record, nibble) + Vector256.Create(sums[0]);
                    var accB = SubBlock(pair + 128, record + 128, nibble) + Vector256.Create(sums[1]);
                    var scaleBytes = pair + 256 - 16 * half;
                    var sa = Avx2.ConvertToVector256Int16(Vector128.Load(scaleBytes));
                    var sbv = Avx2.ConvertToVector256Int16(Vector128.Load(scaleBytes + 32));
                    var scA = sa & low4;
                    var scB = sbv & low4;
                    e0 += Avx2.MultiplyAddAdjacent(Avx2.UnpackLow(accA, accB), Avx2.UnpackLow(scA, scB));
                    e1 += Avx2.MultiplyAddAdjacent(Avx2.UnpackHigh(accA, accB), Avx2.UnpackHigh(scA, scB));
                    var mins = Vector256.Create(*(int*)(sums + 2)).AsInt16();
                    var mA = Avx2.ShiftRightLogical(sa, 4);
                    var mB = Avx2.ShiftRightLogical(sbv, 4);
                    c0 += Avx2.MultiplyAddAdjacent(Avx2.UnpackLow(mA, mB), mins);
                    c1 += Avx2.MultiplyAddAdjacent(Avx2.UnpackHigh(mA, mB), mins);
                }
                var lowD = scales + 8 * half;
                var highD = scales + 16 + 8 * half;
                ref var yLow = ref half == 0 ? ref y00 : ref y10;
                ref var yHigh = ref half == 0 ? ref y01 : ref y11;
                yLow = Fma.MultiplyAdd(Avx.ConvertToVector256Single(e0) * halfS, HalfToSingle(Vector128.Load(lowD)), yLow);
                yHigh = Fma.MultiplyAdd(Avx.ConvertToVector256Single(e1) * halfS, HalfToSingle(Vector128.Load(highD)), yHigh);
                yLow = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(c0) * s, HalfToSingle(Vector128.Load(lowD + 32)), yLow);
                yHigh = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(c1) * s, HalfToSingle(Vector128.Load(highD + 32)), yHigh);
            }
        }
        // Half h: low holds rows 16h + (0-3, 8-11), high rows 16h + (4-7, 12-15).
        Store(y00, y01, y);
        Store(y10, y11, y + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<float> low, Vector256<float> high, float* y)
    {
        Vector256.Create(low.GetLower(), high.GetLower()).Store(y);
        Vector256.Create(low.GetUpper(), high.GetUpper()).Store(y + 8);
    }
}
