using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>How a Vector128 kernel folds the looked-up byte pairs (T[i₀], T[i₁]) of each row into T[i₀] + 2·T[i₁].</summary>
public interface IBytePairSum
{
    static abstract Vector128<short> Sum(Vector128<sbyte> pairs);
}

/// <summary>SSSE3 <c>pmaddubsw</c> by (1, 2).</summary>
public readonly struct Ssse3PairSum : IBytePairSum
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<short> Sum(Vector128<sbyte> pairs) =>
        Ssse3.MultiplyAddAdjacent(Vector128.Create((ushort)0x0201).AsByte(), pairs);
}

/// <summary>Portable (NEON and others): the two bytes of each int16 lane sign-extended by shifts.</summary>
public readonly struct PortablePairSum : IBytePairSum
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<short> Sum(Vector128<sbyte> pairs)
    {
        var lanes = pairs.AsInt16();
        var first = Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(lanes, 8), 8);
        var second = Vector128.ShiftRightArithmetic(lanes, 8);
        return first + second + second;
    }
}

/// <summary>
/// The bit-serial LUT kernel with portable <see cref="Vector128"/> code (<see cref="Vector128.ShuffleNative(Vector128{byte}, Vector128{byte})"/>
/// is <c>pshufb</c> on x86 and <c>tbl</c> on Arm): 16 index bytes are 8 rows; otherwise the same loops and the same
/// arithmetic as <see cref="BitSerialLutAvx512"/>.
/// </summary>
public sealed unsafe class BitSerialLutVector128<TPairs>(GgmlType weightType)
    : BitSerialLutMatVec(weightType, InstructionSet.Vector128, typeof(TPairs) == typeof(Ssse3PairSum) ? "Vector128 bit-serial LUT (SSSE3)" : "Vector128 bit-serial LUT")
    where TPairs : struct, IBytePairSum
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void FullChunks(byte* tile, int h, int chunks, byte* sidecar, int n, float* y)
    {
        switch (WeightType)
        {
            case GgmlType.Q4_0 or GgmlType.Q4_1:
                Q4Chunks(tile, h, chunks, sidecar, n / 32, y, WeightType == GgmlType.Q4_1);
                break;
            default:
                Q2_KChunk(tile, sidecar, n / 256, y);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q4Chunks(byte* tile, int h, int chunks, byte* sidecar, int blocks, float* y, bool hasMin)
    {
        var blockBytes = hasMin ? 20 : 18;
        var chunkBytes = ChunkRows * blockBytes;
        var blockStride = (long)h * blockBytes;
        for (var i = 0; i < chunks * ChunkRows; i += 4)
            Vector128<float>.Zero.Store(y + i);
        var nibble = Vector128.Create((byte)0x0F);
        for (var b = 0; b < blocks; b++, tile += blockStride, sidecar += Q4Record)
        {
            var t0 = Vector128.Load(sidecar);
            var t1 = Vector128.Load(sidecar + 32);
            var t2 = Vector128.Load(sidecar + 64);
            var t3 = Vector128.Load(sidecar + 96);
            var t4 = Vector128.Load(sidecar + 128);
            var t5 = Vector128.Load(sidecar + 160);
            var t6 = Vector128.Load(sidecar + 192);
            var t7 = Vector128.Load(sidecar + 224);
            var coefficients = (float*)(sidecar + 256);
            var a = Vector128.Create(coefficients[0]);
            var bias = Vector128.Create(coefficients[1]);
            var sum = Vector128.Create(coefficients[2]);
            for (var c = 0; c < chunks; c++)
            {
                for (var piece = 0; piece < 4; piece++)
                {
                    // Rows 8q..8q+7 of the chunk: 16 bytes into each index vector and into the scales.
                    var w = tile + c * chunkBytes + 16 * piece;
                    var yc = y + c * ChunkRows + 8 * piece;
                    var acc = Vector128<short>.Zero;
                    var lowL = Vector128<byte>.Zero;
                    var highL = Vector128<byte>.Zero;
                    Lookup(w, t0, sidecar + 16, nibble, ref acc, ref lowL, ref highL);
                    Lookup(w + 64, t1, sidecar + 48, nibble, ref acc, ref lowL, ref highL);
                    Lookup(w + 128, t2, sidecar + 80, nibble, ref acc, ref lowL, ref highL);
                    Lookup(w + 192, t3, sidecar + 112, nibble, ref acc, ref lowL, ref highL);
                    Lookup(w + 256, t4, sidecar + 144, nibble, ref acc, ref lowL, ref highL);
                    Lookup(w + 320, t5, sidecar + 176, nibble, ref acc, ref lowL, ref highL);
                    Lookup(w + 384, t6, sidecar + 208, nibble, ref acc, ref lowL, ref highL);
                    Lookup(w + 448, t7, sidecar + 240, nibble, ref acc, ref lowL, ref highL);
                    // Σ 2ⁱ·L ≤ 15·24 and 4·H + L are exact in f32.
                    var rest = TPairs.Sum(lowL.AsSByte()) + Vector128.ShiftLeft(TPairs.Sum(highL.AsSByte()), 2);
                    var d = Vector128.Load((short*)(w + 512));
                    var four = Vector128.Create(4f);
                    var lower = Vector128.FusedMultiplyAdd(Vector128.FusedMultiplyAdd(ToSingle(Vector128.WidenLower(acc)), four, ToSingle(Vector128.WidenLower(rest))), a, bias);
                    var upper = Vector128.FusedMultiplyAdd(Vector128.FusedMultiplyAdd(ToSingle(Vector128.WidenUpper(acc)), four, ToSingle(Vector128.WidenUpper(rest))), a, bias);
                    var y0 = Vector128.FusedMultiplyAdd(lower, HalfToSingle(Vector128.WidenLower(d)), Vector128.Load(yc));
                    var y1 = Vector128.FusedMultiplyAdd(upper, HalfToSingle(Vector128.WidenUpper(d)), Vector128.Load(yc + 4));
                    if (hasMin)
                    {
                        var m = Vector128.Load((short*)(w + 576));
                        y0 = Vector128.FusedMultiplyAdd(HalfToSingle(Vector128.WidenLower(m)), sum, y0);
                        y1 = Vector128.FusedMultiplyAdd(HalfToSingle(Vector128.WidenUpper(m)), sum, y1);
                    }
                    y0.Store(yc);
                    y1.Store(yc + 4);
                }
            }
        }
    }

    /// <summary>8 rows × 4 planes on one exact table: Σᵢ 2ⁱ H[indexᵢ] into acc, the L lookups (0..3) summed as bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lookup(byte* index, Vector128<byte> high, byte* low, Vector128<byte> nibble, ref Vector128<short> acc, ref Vector128<byte> lowL, ref Vector128<byte> highL)
    {
        var v = Vector128.Load(index);
        var lowNibbles = v & nibble;
        var highNibbles = Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & nibble;
        acc += TPairs.Sum(Vector128.ShuffleNative(high, lowNibbles).AsSByte()) + Vector128.ShiftLeft(TPairs.Sum(Vector128.ShuffleNative(high, highNibbles).AsSByte()), 2);
        var lowTable = Vector128.Load(low);
        lowL += Vector128.ShuffleNative(lowTable, lowNibbles);
        highL += Vector128.ShuffleNative(lowTable, highNibbles);
    }

    /// <summary>8 rows × 2 planes on two exact tables (T = 4H + L): T[i₀] + 2T[i₁] summed over both.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<short> Lookup2(byte* index, byte* first, byte* second, Vector128<byte> nibble)
    {
        var v = Vector128.Load(index);
        var low = v & nibble;
        var high = Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & nibble;
        var main = TPairs.Sum(Vector128.ShuffleNative(Vector128.Load(first), low).AsSByte())
            + TPairs.Sum(Vector128.ShuffleNative(Vector128.Load(second), high).AsSByte());
        var rest = TPairs.Sum(Vector128.ShuffleNative(Vector128.Load(first + 16), low).AsSByte())
            + TPairs.Sum(Vector128.ShuffleNative(Vector128.Load(second + 16), high).AsSByte());
        return Vector128.ShiftLeft(main, 2) + rest;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> ToSingle(Vector128<int> sums) => Vector128.ConvertToSingle(sums);

    /// <summary>Exact f16 → f32 of 4 finite halves (sign-extended), as <see cref="BitSerialLutAvx512"/> does it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HalfToSingle(Vector128<int> half)
    {
        var bits = Vector128.ShiftLeft(half, 13) & Vector128.Create(unchecked((int)0x8FFF_E000));
        return bits.AsSingle() * Vector128.Create(0x7780_0000).AsSingle();
    }

    /// <summary>One 32-row Q2_K chunk, 8 rows at a time per super-block; int32 products instead of <c>pmaddwd</c>.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q2_KChunk(byte* w, byte* sidecar, int superBlocks, float* y)
    {
        var nibble = Vector128.Create((byte)0x0F);
        var low4 = Vector128.Create((short)0x0F);
        for (var i = 0; i < ChunkRows; i += 4)
            Vector128<float>.Zero.Store(y + i);
        for (var sb = 0; sb < superBlocks; sb++, w += 84 * ChunkRows, sidecar += Q2_KSuperBlockRecord)
        {
            var f = (float*)(sidecar + 8 * Q2_KPairRecord);
            var halfS = Vector128.Create(f[0]);
            var s = Vector128.Create(f[1]);
            for (var piece = 0; piece < 4; piece++)
            {
                var e0 = Vector128<int>.Zero;
                var e1 = Vector128<int>.Zero;
                var c0 = Vector128<int>.Zero;
                var c1 = Vector128<int>.Zero;
                var pair = w + 16 * piece;
                var record = sidecar;
                for (var p = 0; p < 8; p++, pair += 320, record += Q2_KPairRecord)
                {
                    var sums = (short*)(record + 256);
                    var accA = Lookup2(pair, record, record + 32, nibble) + Lookup2(pair + 64, record + 64, record + 96, nibble)
                        + Vector128.Create(sums[0]);
                    var accB = Lookup2(pair + 128, record + 128, record + 160, nibble) + Lookup2(pair + 192, record + 192, record + 224, nibble)
                        + Vector128.Create(sums[1]);
                    var scaleBytes = pair + 256 - 8 * piece;
                    var sa = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)scaleBytes).AsByte()).AsInt16();
                    var sbv = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)(scaleBytes + 32)).AsByte()).AsInt16();
                    var scA = sa & low4;
                    var scB = sbv & low4;
                    e0 += Vector128.WidenLower(accA) * Vector128.WidenLower(scA) + Vector128.WidenLower(accB) * Vector128.WidenLower(scB);
                    e1 += Vector128.WidenUpper(accA) * Vector128.WidenUpper(scA) + Vector128.WidenUpper(accB) * Vector128.WidenUpper(scB);
                    var xa = Vector128.Create((int)sums[2]);
                    var xb = Vector128.Create((int)sums[3]);
                    var mA = Vector128.ShiftRightLogical(sa, 4);
                    var mB = Vector128.ShiftRightLogical(sbv, 4);
                    c0 += Vector128.WidenLower(mA) * xa + Vector128.WidenLower(mB) * xb;
                    c1 += Vector128.WidenUpper(mA) * xa + Vector128.WidenUpper(mB) * xb;
                }
                // Rows 8q..8q+3 keep d at positions 4q..4q+3, rows 8q+4..8q+7 at 16+4q..; dmin 32 positions later.
                var scales = (short*)(w + 80 * ChunkRows) + 4 * piece;
                var yc = y + 8 * piece;
                var y0 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(e0) * halfS, HalfToSingle(Half4(scales)), Vector128.Load(yc));
                var y1 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(e1) * halfS, HalfToSingle(Half4(scales + 16)), Vector128.Load(yc + 4));
                y0 = Vector128.FusedMultiplyAdd(-(Vector128.ConvertToSingle(c0) * s), HalfToSingle(Half4(scales + 32)), y0);
                y1 = Vector128.FusedMultiplyAdd(-(Vector128.ConvertToSingle(c1) * s), HalfToSingle(Half4(scales + 48)), y1);
                y0.Store(yc);
                y1.Store(yc + 4);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Half4(short* halves) => Vector128.WidenLower(Vector128.CreateScalar(*(long*)halves).AsInt16());
}
