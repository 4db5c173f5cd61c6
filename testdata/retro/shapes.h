// libshapes.so.1: the retro tests' C++ library (vtables, typeinfo,
// exceptions thrown across objects, data the program copies, a static
// local of an inline function: an STB_GNU_UNIQUE symbol).
#ifndef SHAPES_H
#define SHAPES_H
#include <stdexcept>
#include <string>

struct Shape {
    virtual ~Shape();
    virtual double area() const = 0;
    virtual std::string name() const;
    std::string describe() const;           // calls the virtuals through the vtable
};

struct Square : Shape {
    explicit Square(double side) : side(side) {}
    double area() const override;
    std::string name() const override;
    double side;
};

struct ShapeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

extern int shapes_made;                     // the program copies it (COPY relocation)

Shape *make_shape(const std::string &kind, double size);   // throws ShapeError
bool is_square(const Shape *shape);                        // dynamic_cast in the library

inline int &shared_tally()                  // one object for every user: STB_GNU_UNIQUE
{
    static int tally;
    return tally;
}
#endif
