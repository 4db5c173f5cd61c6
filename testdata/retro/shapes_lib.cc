// libshapes.so.1, see shapes.h.
#include "shapes.h"

int shapes_made;

Shape::~Shape() {}
std::string Shape::name() const { return "shape"; }
std::string Shape::describe() const
{
    shared_tally()++;
    return name() + " of area " + std::to_string(area());
}

double Square::area() const { return side * side; }
std::string Square::name() const { return "square"; }

Shape *make_shape(const std::string &kind, double size)
{
    if (kind == "square") {
        shapes_made++;
        return new Square(size);
    }
    throw ShapeError("no shape called " + kind);
}

bool is_square(const Shape *shape) { return dynamic_cast<const Square *>(shape) != nullptr; }
